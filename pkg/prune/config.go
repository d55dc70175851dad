package prune

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/maniac-ai/mach/pkg/sidecar"
)

// expertCountKeys are the config keys that hold the routed-expert count
// (modelconfig reads the first present).
var expertCountKeys = []string{"num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"}

// rewriteConfig returns config.json with the new expert counts and the MLX
// quantization overrides of stacked expert modules moved to the per-expert
// modules. Numbers keep their exact text; keys come out sorted, as
// transformers writes them.
func (j *job) rewriteConfig() ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(j.cfg.Raw))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		return nil, fault.Mark(fmt.Errorf("%s: %w", j.cfg.Name(), err), fault.ErrIO)
	}
	text := top
	if j.cfg.Wrapped {
		tc, ok := top["text_config"].(map[string]any)
		if !ok {
			return nil, fault.Mark(fmt.Errorf("%s: text_config is not an object", j.cfg.Name()), fault.ErrIO)
		}
		text = tc
	}
	counts := map[int]int{}
	most := 0
	for l, k := range j.keep {
		counts[l] = len(k)
		most = max(most, len(k))
	}
	found := false
	for _, obj := range []map[string]any{text, top} {
		for _, k := range expertCountKeys {
			if v, ok := obj[k]; ok && v != nil {
				obj[k] = json.Number(strconv.Itoa(most))
				found = true
			}
		}
		if !j.cfg.Wrapped {
			break
		}
	}
	if !found {
		return nil, fault.Mark(fmt.Errorf("%s: no expert count key (%s) to update", j.cfg.Name(), strings.Join(expertCountKeys, ", ")), fault.ErrIO)
	}
	uniform := true
	for _, n := range counts {
		uniform = uniform && n == most
	}
	if uniform {
		delete(text, modelconfig.ExpertsPerLayerKey)
	} else {
		per := make([]any, j.cfg.NumLayers)
		for i := range per {
			per[i] = json.Number(strconv.Itoa(counts[i]))
		}
		text[modelconfig.ExpertsPerLayerKey] = per
	}
	for _, obj := range []map[string]any{top, text} {
		for _, key := range []string{"quantization", "quantization_config"} {
			if q, ok := obj[key].(map[string]any); ok {
				j.rewriteOverrides(q)
			}
		}
		if !j.cfg.Wrapped {
			break
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(top); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// rewriteOverrides replaces MLX per-module overrides of routed-expert
// modules with overrides of the engine layout's per-expert modules.
func (j *job) rewriteOverrides(q map[string]any) {
	for _, k := range slices.Sorted(maps.Keys(q)) {
		v := q[k]
		switch v.(type) {
		case map[string]any, bool:
		default:
			continue
		}
		kind, et := checkpoint.Classify(j.model, k+".weight")
		if kind != checkpoint.RoutedExpert {
			continue
		}
		block, _ := checkpoint.BlockPrefix(j.model, k+".weight")
		kept := j.keptOf(et)
		delete(q, k)
		projs := []checkpoint.Proj{et.Proj}
		if et.Proj == checkpoint.GateUp {
			projs = []checkpoint.Proj{checkpoint.Gate, checkpoint.Up}
		}
		for newID, e := range kept {
			if !et.Stacked() && e != et.Expert {
				continue
			}
			for _, p := range projs {
				q[strings.TrimSuffix(checkpoint.ExpertName(j.model, block, newID, p, checkpoint.Weight), ".weight")] = v
			}
		}
	}
}

// ExpertMap is expert_map.json: for every pruned MoE layer, the source
// expert id of each new expert id.
type ExpertMap struct {
	Format           string `json:"format"`
	Version          int    `json:"version"`
	ModelType        string `json:"model_type"`
	CandidateID      string `json:"candidate_id,omitempty"`
	SourceNumExperts int    `json:"source_num_experts"`
	// Layers maps a layer index (decimal string) to the source ids of its
	// new experts 0, 1, ….
	Layers map[string][]int `json:"layers"`
}

// ExpertMapFormat is expert_map.json's "format" value.
const ExpertMapFormat = "mach-expert-map"

const maxExpertMapSize = 64 << 20

// ReadExpertMap reads dir/expert_map.json.
func ReadExpertMap(dir string) (*ExpertMap, error) {
	p := filepath.Join(dir, ExpertMapName)
	f, err := os.Open(p)
	if err != nil {
		return nil, fault.Mark(err, fault.ErrIO)
	}
	defer f.Close()
	// A 94-layer, 256-expert map is about 100 KB.
	b, err := io.ReadAll(io.LimitReader(f, maxExpertMapSize+1))
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("read %s: %w", p, err), fault.ErrIO)
	}
	if len(b) > maxExpertMapSize {
		return nil, fault.Mark(fmt.Errorf("%s: larger than %d bytes", p, maxExpertMapSize), fault.ErrIO)
	}
	var m ExpertMap
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fault.Mark(fmt.Errorf("%s: %w", p, err), fault.ErrIO)
	}
	if m.Format != ExpertMapFormat || m.Version != 1 {
		return nil, fault.Mark(fmt.Errorf("%s: format %q version %d, want %q version 1", p, m.Format, m.Version, ExpertMapFormat), fault.ErrIO)
	}
	return &m, nil
}

// buildExpertMap writes the layers in numeric order.
func (j *job) buildExpertMap() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{\n")
	fmt.Fprintf(&b, "  \"format\": %q,\n  \"version\": 1,\n  \"model_type\": %q,\n", ExpertMapFormat, j.model)
	if c := j.opts.Candidate; c != nil {
		id, _ := json.Marshal(c.ID)
		fmt.Fprintf(&b, "  \"candidate_id\": %s,\n", id)
	}
	fmt.Fprintf(&b, "  \"source_num_experts\": %d,\n  \"layers\": {", j.sourceExperts())
	for i, l := range slices.Sorted(maps.Keys(j.keep)) {
		if i > 0 {
			b.WriteByte(',')
		}
		ids, _ := json.Marshal(j.keep[l])
		fmt.Fprintf(&b, "\n    \"%d\": %s", l, ids)
	}
	b.WriteString("\n  }\n}\n")
	return b.Bytes(), nil
}

// sourceExperts is the source's routed experts per layer (the largest
// layer's, when they differ).
func (j *job) sourceExperts() int {
	n := 0
	for _, c := range j.in.Experts.PerLayer {
		n = max(n, c)
	}
	return n
}

// readMetadata keeps the source's safetensors "format" (transformers
// refuses files without one).
func (j *job) readMetadata() error {
	h, err := safetensors.ReadFileHeader(j.hs.Files[0])
	if err != nil {
		return err
	}
	format := h.Metadata["format"]
	if format == "" {
		format = "pt"
	}
	j.meta = map[string]string{"format": format}
	return nil
}

// copyable reports whether a file (besides weights and config.json) goes
// with the checkpoint: tokenizer, chat template, generation and processor
// settings, licences.
func copyable(name string) bool {
	lower := strings.ToLower(name)
	switch lower {
	case "generation_config.json", "special_tokens_map.json", "added_tokens.json", "merges.txt",
		"preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
		"chat_template.jinja", "chat_template.json":
		return true
	}
	for _, p := range []string{"tokenizer", "vocab."} {
		if strings.HasPrefix(lower, p) {
			return true
		}
	}
	// Licences travel with a derivative (LICENSE, DATA_LICENSE.txt, NOTICE).
	if strings.Contains(lower, "licen") || strings.HasPrefix(lower, "notice") {
		return true
	}
	return strings.HasSuffix(lower, ".tiktoken") || strings.HasSuffix(lower, ".jinja")
}

// filesToCopy lists the regular files of dir to copy, sorted.
func filesToCopy(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fault.Mark(err, fault.ErrIO)
	}
	var out []string
	for _, e := range ents {
		if !copyable(e.Name()) {
			continue
		}
		// Hugging Face cache snapshots hold symlinks to blobs.
		st, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		out = append(out, e.Name())
	}
	return out, nil
}

func (j *job) summarize() {
	s := &j.sum
	s.Source, s.Output, s.ModelType = j.opts.Source, j.opts.Output, j.model
	if c := j.opts.Candidate; c != nil {
		id := c.ID
		s.CandidateID = &id
	}
	s.SourceLayout, s.Layout = j.in.Layout, checkpoint.PerExpert
	s.SourceExperts, s.TopK = j.sourceExperts(), j.cfg.ExpertsPerToken
	for _, l := range slices.Sorted(maps.Keys(j.keep)) {
		src := j.in.Experts.PerLayer[l]
		s.Layers = append(s.Layers, LayerSummary{Layer: l, Source: src, Kept: len(j.keep[l]), Removed: src - len(j.keep[l])})
		s.Experts = max(s.Experts, len(j.keep[l]))
	}
	s.MTPLayers = slices.Sorted(maps.Keys(j.mtp))
	s.Tensors = len(j.tensors)
	s.CopiedFiles = j.copies
	if s.CopiedFiles == nil {
		s.CopiedFiles = []string{}
	}
	s.BytesBefore = j.hs.TotalBytes()
	s.ExpertBytesBefore = j.in.Experts.Bytes
	for _, t := range j.tensors {
		s.BytesAfter += t.size
		if t.expert {
			s.ExpertBytesAfter += t.size
		}
	}
	shards := planShards(j.tensors, j.opts.MaxShardSize)
	for i := range shards {
		s.Shards = append(s.Shards, shardName(i, len(shards)))
	}
	for _, w := range j.in.Warnings {
		s.Notes = append(s.Notes, "source: "+w)
	}
	if j.in.Sidecar.Present {
		s.Notes = append(s.Notes, fmt.Sprintf("the source's %s/ is not copied (it describes the source's experts); run mach-export-sidecar on the output", sidecar.DirName))
	}
	if len(j.in.GGUFFiles) > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("%d *.gguf file(s) of the source are not copied", len(j.in.GGUFFiles)))
	}
}

// checkLoadable refuses a prune that turns a config.json the architecture's
// loader accepts into one it would refuse (registry.Arch.CheckConfig, the validation the loader builds
// its options on): gemma4, for one, cannot run different expert counts per
// layer, so a plan that keeps unequal counts there is a usage error, caught
// before anything is written.
func (j *job) checkLoadable() error {
	arch, ok := j.opts.Registry.Lookup(j.model)
	if !ok {
		return nil
	}
	if arch.ValidateConfig(j.cfg) != nil {
		// The source does not load either; pruning does not make it worse.
		return nil
	}
	out, err := modelconfig.Parse(j.config)
	if err != nil {
		return err
	}
	if err := arch.ValidateConfig(out); err != nil {
		detail := err.Error()
		if prefix := out.Name() + ": "; strings.HasPrefix(detail, prefix) {
			detail = detail[len(prefix):]
		}
		return usagef("%s: the pruned checkpoint would not load: the %s loader refuses its config.json: %s", j.opts.Source, arch.ModelType, detail)
	}
	return nil
}
