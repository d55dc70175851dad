// Package prune writes a checkpoint in the per-expert engine layout,
// keeping the routed experts a plan selects (or all of them, a pure layout
// conversion). Routed experts are renumbered densely in kept order, one
// tensor per kept expert and projection with the names
// checkpoint.ExpertName defines; the routers' rows (and per-expert router
// biases and scales) are sliced to match and DeepSeek hash tables
// remapped; config.json's expert count is updated (num_experts_per_layer
// when layers differ); expert_map.json maps new ids to source ids; every
// other tensor is carried over unchanged, and tokenizer and chat files are
// copied.
//
// The source is streamed tensor by tensor with pread through 4 MiB buffers
// (one expert slab at a time where rows are regathered), so memory stays
// small whatever the model's size. The output is built in a temporary
// directory next to it, every file fsynced, and renamed into place at the
// end: an interrupted run leaves nothing that looks like a checkpoint.
package prune

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/pruneplan"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/safetensors"
)

// DefaultMaxShardSize bounds output shards unless Options say otherwise
// (5 GB, as Hugging Face writes them).
const DefaultMaxShardSize = 5_000_000_000

// ExpertMapName is the file mapping new expert ids to source ids.
const ExpertMapName = "expert_map.json"

// ErrPlan is wrapped when a plan does not fit the source checkpoint.
var ErrPlan = errors.New("the plan does not fit the checkpoint")

// Options say what to prune.
type Options struct {
	// Source is the checkpoint directory to read.
	Source string
	// Output is the directory to create. It must not exist or be empty,
	// unless Force is set and it holds a checkpoint (config.json), which is
	// then replaced.
	Output string
	// Candidate is the plan line to apply; nil keeps every expert.
	Candidate *pruneplan.Candidate
	// Registry lists the architectures mach knows (registry.Default()).
	Registry *registry.Registry
	// MaxShardSize bounds the bytes of tensor data in one shard (0 means
	// DefaultMaxShardSize). A tensor larger than it gets a shard of its own.
	MaxShardSize int64
	Force        bool
	// DryRun validates everything and returns the summary without writing.
	DryRun bool
	// Progress, when set, is called after every tensor written.
	Progress func(Progress)
}

// Progress reports how far the write is.
type Progress struct {
	Done, Total   int64 // tensor bytes
	Shard, Shards int   // 1-based shard being written
	Tensor        string
}

// Summary describes what was (or, for a dry run, would be) written.
type Summary struct {
	Source       string            `json:"source"`
	Output       string            `json:"output"`
	ModelType    string            `json:"model_type"`
	CandidateID  *string           `json:"candidate_id"`
	SourceLayout checkpoint.Layout `json:"source_layout"`
	Layout       checkpoint.Layout `json:"layout"`
	// SourceExperts is the source's routed experts per MoE layer; Experts
	// the output's (the largest layer's when layers differ, as config.json
	// says); TopK the experts each token uses.
	SourceExperts int            `json:"source_num_experts"`
	Experts       int            `json:"num_experts"`
	TopK          int            `json:"top_k"`
	Layers        []LayerSummary `json:"layers"`
	// MTPLayers are the MTP head's layers, whose experts are converted but
	// never pruned.
	MTPLayers   []int    `json:"mtp_layers,omitempty"`
	Tensors     int      `json:"tensors"`
	Shards      []string `json:"shards"`
	CopiedFiles []string `json:"copied_files"`
	// Bytes of tensor data before and after, and the routed experts' part.
	BytesBefore       int64   `json:"bytes_before"`
	BytesAfter        int64   `json:"bytes_after"`
	ExpertBytesBefore int64   `json:"expert_bytes_before"`
	ExpertBytesAfter  int64   `json:"expert_bytes_after"`
	DryRun            bool    `json:"dry_run"`
	Seconds           float64 `json:"seconds"`
	// Notes are facts the user should know (a source sidecar not copied).
	Notes []string `json:"notes,omitempty"`
}

// LayerSummary is one MoE layer.
type LayerSummary struct {
	Layer   int `json:"layer"`
	Source  int `json:"source_experts"`
	Kept    int `json:"kept"`
	Removed int `json:"removed"`
}

// Uniform reports whether every MoE layer keeps the same number of experts.
func (s *Summary) Uniform() bool {
	for _, l := range s.Layers {
		if l.Kept != s.Layers[0].Kept {
			return false
		}
	}
	return true
}

func usagef(format string, args ...any) error {
	return fault.Mark(fmt.Errorf(format, args...), fault.ErrUsage)
}

func planErrf(format string, args ...any) error {
	return fault.Mark(fmt.Errorf("%w: %s", ErrPlan, fmt.Sprintf(format, args...)), fault.ErrUsage)
}

// job is a validated prune: everything to write, decided before writing.
type job struct {
	opts  Options
	cfg   *modelconfig.Config
	in    *checkpoint.Inspection
	hs    *safetensors.Headers
	files map[string]*os.File
	model string
	// keep[layer] lists the kept source experts of each main MoE layer, in
	// new-id order; mtp[layer] is the expert count of each MTP layer.
	keep map[int][]int
	mtp  map[int]int

	tensors   []*outTensor
	config    []byte
	expertMap []byte
	copies    []string
	meta      map[string]string
	sum       Summary
	// Buffers of the single writing goroutine.
	buf, slab []byte
}

func (j *job) close() {
	for _, f := range j.files {
		_ = f.Close()
	}
}

// Run prunes (or converts) the checkpoint and returns the summary.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	start := time.Now()
	j, err := prepare(opts)
	if err != nil {
		return nil, err
	}
	defer j.close()
	if !opts.DryRun {
		if err := j.write(ctx); err != nil {
			return nil, err
		}
	}
	j.sum.DryRun = opts.DryRun
	j.sum.Seconds = time.Since(start).Seconds()
	return &j.sum, nil
}

func prepare(opts Options) (*job, error) {
	if opts.Source == "" {
		return nil, usagef("no source checkpoint directory (--source)")
	}
	if opts.Output == "" {
		return nil, usagef("no output directory (--output)")
	}
	if opts.MaxShardSize < 0 {
		return nil, usagef("max shard size %d: want a positive number of bytes", opts.MaxShardSize)
	}
	if opts.MaxShardSize == 0 {
		opts.MaxShardSize = DefaultMaxShardSize
	}
	if opts.Registry == nil {
		opts.Registry = registry.Default()
	}
	if err := checkPaths(opts); err != nil {
		return nil, err
	}
	cfg, err := modelconfig.Load(opts.Source)
	if err != nil {
		return nil, err
	}
	arch, err := opts.Registry.Require(cfg.ModelType)
	if err != nil {
		var ue *registry.UnknownError
		if errors.As(err, &ue) {
			return nil, fault.Mark(fmt.Errorf("%s: %w", cfg.Name(), err), fault.ErrUnsupported)
		}
		return nil, err
	}
	in, err := checkpoint.Inspect(opts.Source, cfg, checkpoint.Options{})
	if err != nil {
		return nil, err
	}
	if !in.WeightsInspected || len(in.Experts.Layers) == 0 {
		return nil, fault.Mark(fmt.Errorf("%s: no routed-expert tensors in safetensors weights to slice (layout %s); mach-prune reads experts from model*.safetensors", opts.Source, in.Layout), fault.ErrUnsupported)
	}
	j := &job{opts: opts, cfg: cfg, in: in, model: arch.ModelType, mtp: map[int]int{}}
	if err := j.decideKeep(); err != nil {
		return nil, err
	}
	if j.hs, err = safetensors.ReadHeaders(opts.Source); err != nil {
		return nil, err
	}
	j.files = map[string]*os.File{}
	for _, p := range j.hs.Files {
		f, err := os.Open(p)
		if err != nil {
			j.close()
			return nil, fault.Mark(err, fault.ErrIO)
		}
		j.files[p] = f
	}
	if err := j.plan(); err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

// checkPaths refuses outputs that would clobber the source or something
// that is not a checkpoint.
func checkPaths(opts Options) error {
	src, err := canonical(opts.Source)
	if err != nil {
		return fault.Mark(fmt.Errorf("source %s: %w", opts.Source, err), fault.ErrIO)
	}
	if st, err := os.Stat(src); err != nil || !st.IsDir() {
		return fault.Mark(fmt.Errorf("source %s is not a checkpoint directory", opts.Source), fault.ErrIO)
	}
	out, err := canonical(opts.Output)
	if err != nil {
		return fault.Mark(fmt.Errorf("output %s: %w", opts.Output, err), fault.ErrIO)
	}
	if out == src || within(src, out) {
		return usagef("output %s would replace the source checkpoint %s (or a directory holding it); choose another --output", opts.Output, opts.Source)
	}
	st, err := os.Stat(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fault.Mark(fmt.Errorf("output %s: %w", opts.Output, err), fault.ErrIO)
	case !st.IsDir():
		return usagef("output %s exists and is not a directory", opts.Output)
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return fault.Mark(fmt.Errorf("output %s: %w", opts.Output, err), fault.ErrIO)
	}
	if len(ents) == 0 {
		return nil
	}
	if !opts.Force {
		return usagef("output directory %s exists and is not empty; choose another --output or pass --force to replace it", opts.Output)
	}
	if _, err := os.Stat(filepath.Join(out, modelconfig.FileName)); err != nil {
		return usagef("output directory %s is not empty and holds no config.json; --force only replaces a checkpoint directory, so remove it yourself if it should go", opts.Output)
	}
	return nil
}

// canonical makes p absolute and resolves the symlinks of its longest
// existing prefix.
func canonical(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	for cur := abs; ; cur = filepath.Dir(cur) {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			slices.Reverse(rest)
			return filepath.Join(append([]string{r}, rest...)...), nil
		}
		if filepath.Dir(cur) == cur {
			return abs, nil
		}
		rest = append(rest, filepath.Base(cur))
	}
}

// within reports whether p is inside dir (or is dir).
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// decideKeep turns the candidate (or keep-all) into per-layer keep lists
// and checks it against the model.
func (j *job) decideKeep() error {
	in, cfg, c := j.in, j.cfg, j.opts.Candidate
	for _, l := range in.Experts.MTPLayers {
		j.mtp[l] = 0 // filled from the tensors in plan
	}
	j.keep = map[int][]int{}
	counts := in.Experts.PerLayer
	if c == nil {
		for _, l := range in.Experts.Layers {
			j.keep[l] = seq(counts[l])
		}
		return nil
	}
	if err := c.Validate(); err != nil {
		return err
	}
	name := fmt.Sprintf("candidate %q", c.ID)
	for _, l := range in.Experts.Layers {
		if counts[l] != c.NumExperts {
			if cfg.ExpertsPerLayer != nil {
				return planErrf("%s is for num_experts %d, but %s keeps different numbers of experts per layer (layer %d has %d); prune from the unpruned checkpoint", name, c.NumExperts, j.opts.Source, l, counts[l])
			}
			return planErrf("%s is for a model with num_experts %d, but %s has %d routed experts per layer", name, c.NumExperts, j.opts.Source, counts[l])
		}
	}
	var missing, extra []int
	for _, l := range in.Experts.Layers {
		if _, ok := c.Keep[l]; !ok {
			missing = append(missing, l)
		}
	}
	for _, l := range c.Layers() {
		if _, ok := counts[l]; !ok {
			extra = append(extra, l)
		}
	}
	if len(missing) > 0 {
		return planErrf("%s has no keep list for MoE layer(s) %s of %s (its MoE layers are %s)", name, ints(missing), j.opts.Source, ints(in.Experts.Layers))
	}
	if len(extra) > 0 {
		return planErrf("%s lists layer(s) %s, which are not MoE layers of %s (its MoE layers are %s)", name, ints(extra), j.opts.Source, ints(in.Experts.Layers))
	}
	for _, l := range in.Experts.Layers {
		if k := len(c.Keep[l]); k < cfg.ExpertsPerToken {
			return planErrf("%s keeps %d experts in layer %d, fewer than the %d each token is routed to (num_experts_per_tok)", name, k, l, cfg.ExpertsPerToken)
		}
		j.keep[l] = slices.Clone(c.Keep[l])
	}
	if len(in.Experts.MTPLayers) > 0 && !c.KeepsAll() {
		return fault.Mark(fmt.Errorf("%s has an MTP head with its own routed experts (layer(s) %s) sharing config.json's expert count; pruning it needs a separate plan, which this build does not support: prune a checkpoint without the MTP head, or keep every expert", j.opts.Source, ints(in.Experts.MTPLayers)), fault.ErrUnsupported)
	}
	return j.checkGroups()
}

// checkGroups: with group-limited routing (n_group > 1) experts are
// grouped in contiguous id ranges, so a pruned model routes like the
// original only if every group keeps the same number of experts.
func (j *job) checkGroups() error {
	var x struct {
		NGroup int `json:"n_group"`
	}
	_ = json.Unmarshal(j.cfg.Text, &x)
	if x.NGroup <= 1 {
		return nil
	}
	c := j.opts.Candidate
	if c.NumExperts%x.NGroup != 0 {
		return planErrf("%s: n_group %d does not divide num_experts %d", j.cfg.Name(), x.NGroup, c.NumExperts)
	}
	size := c.NumExperts / x.NGroup
	for _, l := range c.Layers() {
		per := make([]int, x.NGroup)
		for _, e := range c.Keep[l] {
			per[e/size]++
		}
		for g := range per {
			if per[g] != per[0] {
				return planErrf("candidate %q keeps %s experts of the %d routing groups of layer %d; with group-limited routing (n_group %d) every group must keep the same number", c.ID, ints(per), x.NGroup, l, x.NGroup)
			}
		}
	}
	return nil
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// ints renders a list of ints compactly.
func ints(v []int) string {
	const show = 12
	s := make([]string, 0, min(len(v), show))
	for _, x := range v[:min(len(v), show)] {
		s = append(s, fmt.Sprint(x))
	}
	out := strings.Join(s, ", ")
	if len(v) > show {
		out += fmt.Sprintf(", … (%d more)", len(v)-show)
	}
	return out
}
