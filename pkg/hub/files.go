package hub

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/maniac-ai/mach/pkg/sidecar"
)

// Need says which of a repo's files a command needs: a set of the flags
// below. config.json is always needed.
type Need uint8

const (
	// NeedConfig alone is mach check's config-only resolution: config.json
	// and, when the repo has one, expert_sidecar/layout.json.
	NeedConfig Need = 1 << iota
	// NeedTokenizer: tokenizer.json must be present (text prompts,
	// --tokenize-only); the tokenizer, chat template and generation config
	// files are fetched.
	NeedTokenizer
	// NeedWeights: the safetensors shards and their index (resident
	// generation and serving). Downloads bring the tokenizer files along,
	// since they are small and a later text prompt needs them.
	NeedWeights
	// NeedSidecar: everything under expert_sidecar/ (expert streaming).
	// Resident paths never read the sidecar, which is as large as the
	// routed experts themselves, so it is not fetched without this.
	NeedSidecar
)

func (n Need) String() string {
	var s []string
	for _, x := range []struct {
		n    Need
		name string
	}{{NeedConfig, "config"}, {NeedTokenizer, "tokenizer"}, {NeedWeights, "weights"}, {NeedSidecar, "sidecar"}} {
		if n&x.n != 0 {
			s = append(s, x.name)
		}
	}
	if len(s) == 0 {
		return "config"
	}
	return strings.Join(s, "+")
}

// tokenizerFiles are the repo-root files the tokenizer, the chat template
// and generation defaults come from.
var tokenizerFiles = []string{
	"generation_config.json",
	"tokenizer.json",
	"tokenizer_config.json",
	"special_tokens_map.json",
	"chat_template.jinja",
	"chat_template.json",
}

// Wanted reports whether a command with need uses the repo file at p (a
// repo-relative slash path). shards is the set of shard file names that
// model.safetensors.index.json names, or nil when the repo has no index,
// in which case the root's model*.safetensors are the weights. It is the
// one place that decides what is downloaded: everything else in a repo
// (README, images, original/, other quantizations, GGUF files, training
// state) is never fetched.
func Wanted(p string, need Need, shards map[string]bool) bool {
	if p == ConfigFile {
		return true
	}
	if dir, rest, ok := strings.Cut(p, "/"); ok {
		if dir != sidecar.DirName {
			return false // only the sidecar lives below the root
		}
		if rest == sidecar.LayoutName && need&^NeedConfig == 0 {
			return true // mach check probes the sidecar's metadata
		}
		return need&NeedSidecar != 0
	}
	if slices.Contains(tokenizerFiles, p) {
		return need&(NeedTokenizer|NeedWeights) != 0
	}
	if need&NeedWeights == 0 {
		return false
	}
	if p == safetensors.IndexName {
		return true
	}
	if shards != nil {
		return shards[p]
	}
	ok, _ := path.Match("model*.safetensors", p)
	return ok
}

// Missing lists what dir lacks for need, judged from the files alone (no
// listing): config.json; with NeedTokenizer tokenizer.json; with
// NeedWeights the shards model.safetensors.index.json names, or at least
// one model*.safetensors; with NeedSidecar expert_sidecar/layout.json and
// every layer file it declares. A dangling snapshot link (its blob gone)
// counts as missing. Optional files (chat template, generation config) are
// never reported, since a repo may not have them.
func Missing(dir string, need Need) []string {
	var miss []string
	has := func(rel string) bool {
		st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(rel)))
		return err == nil && st.Mode().IsRegular()
	}
	if !has(ConfigFile) {
		miss = append(miss, ConfigFile)
	}
	if need&NeedTokenizer != 0 && !has("tokenizer.json") {
		miss = append(miss, "tokenizer.json")
	}
	if need&NeedWeights != 0 {
		miss = append(miss, missingWeights(dir, has)...)
	}
	if need&NeedSidecar != 0 {
		switch l, err := sidecar.ReadFile(filepath.Join(dir, filepath.FromSlash(LayoutFile))); {
		case errors.Is(err, os.ErrNotExist):
			miss = append(miss, LayoutFile)
		case err != nil:
			// A malformed layout is for the loader to explain; here it is
			// present.
		default:
			for _, ly := range l.Layers {
				if rel := sidecar.DirName + "/" + ly.File; !has(rel) {
					miss = append(miss, rel)
				}
			}
		}
	}
	return miss
}

func missingWeights(dir string, has func(string) bool) []string {
	if has(safetensors.IndexName) {
		idx, err := safetensors.ReadIndex(dir)
		if err != nil {
			return nil // malformed: present, for the loader to explain
		}
		var miss []string
		for _, s := range shardList(idx) {
			if !has(s) {
				miss = append(miss, s)
			}
		}
		return miss
	}
	m, _ := filepath.Glob(filepath.Join(dir, "model*.safetensors"))
	var dangling []string
	for _, p := range m {
		if has(filepath.Base(p)) {
			return nil
		}
		dangling = append(dangling, filepath.Base(p)) // a link whose blob is gone
	}
	if len(dangling) > 0 {
		return dangling
	}
	return []string{"model*.safetensors (or " + safetensors.IndexName + " and its shards)"}
}

// shardList is the sorted, distinct shard names of an index.
func shardList(idx *safetensors.Index) []string {
	var out []string
	for _, s := range idx.WeightMap {
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
