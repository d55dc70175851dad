package preflight

import (
	"strconv"

	"github.com/maniac-ai/mach/pkg/capability"
	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/registry"
)

// Report is mach check's answer for one checkpoint. Its JSON form is the
// --json output; the keys are a contract for scripts.
type Report struct {
	Model        string                                `json:"model"`
	ModelType    string                                `json:"model_type"`
	Supported    bool                                  `json:"supported"`
	Layout       checkpoint.Layout                     `json:"layout"`
	Quant        QuantReport                           `json:"quant"`
	Experts      ExpertsReport                         `json:"experts"`
	Artifacts    Artifacts                             `json:"artifacts"`
	Memory       MemoryReport                          `json:"memory"`
	Paths        map[capability.Path]capability.Result `json:"paths"`
	Verdict      string                                `json:"verdict"`
	ServeCommand *string                               `json:"serve_command"`

	// For the human report, not part of the JSON.
	PathOrder []PathResult           `json:"-"`
	Decision  Verdict                `json:"-"`
	Inspect   *checkpoint.Inspection `json:"-"`
	Mem       Memory                 `json:"-"`
}

// QuantReport is the routed-expert quant; bits and group_size are null
// when unknown or not grouped.
type QuantReport struct {
	Mode      string `json:"mode"`
	Bits      *int   `json:"bits"`
	GroupSize *int   `json:"group_size"`
}

// ExpertsReport is the routed-expert count: Routed per MoE layer (the
// largest layer's when a pruned checkpoint's layers differ, then listed in
// PerLayer by layer index), from the tensors when they were inspected,
// else from config.json; null when unknown. TopK is num_experts_per_tok.
type ExpertsReport struct {
	Routed   *int           `json:"routed"`
	PerLayer map[string]int `json:"per_layer"`
	TopK     *int           `json:"top_k"`
}

// Artifacts reports the artifact probes: whether a valid expert sidecar
// exists and the draft directory in use (null when none).
type Artifacts struct {
	Sidecar  bool    `json:"sidecar"`
	DraftDir *string `json:"draft_dir"`
}

// MemoryReport is the memory estimate; a byte count is null when unknown.
type MemoryReport struct {
	Verdict         string `json:"verdict"`
	ExpertsBytes    *int64 `json:"experts_bytes"`
	NonExpertBytes  *int64 `json:"non_expert_bytes"`
	KVBytes         *int64 `json:"kv_bytes"`
	ContextLength   int    `json:"context_length"`
	WorkingSetBytes *int64 `json:"working_set_bytes"`
	AvailableBytes  *int64 `json:"available_bytes"`
}

// CheckOptions are mach check's knobs.
type CheckOptions struct {
	Memory MemoryOptions
}

// Check evaluates an inspected checkpoint: every path's gate, the verdict,
// the memory estimate and the suggested serve command. model is how the
// user named it.
func (b Build) Check(model string, arch registry.Arch, in *checkpoint.Inspection, opts CheckOptions) Report {
	paths := b.Paths(arch, in)
	v := Decide(arch, paths)
	mem := EstimateMemory(in, arch, opts.Memory)
	r := Report{
		Model:     model,
		ModelType: arch.ModelType,
		Supported: v.Supported,
		Layout:    in.Layout,
		Quant:     quantReport(in.Quant),
		Experts:   expertsReport(in),
		Artifacts: Artifacts{Sidecar: in.Sidecar.Valid},
		Memory:    memoryReport(mem),
		Paths:     map[capability.Path]capability.Result{},
		Verdict:   v.String(),
		PathOrder: paths,
		Decision:  v,
		Inspect:   in,
		Mem:       mem,
	}
	if in.Draft.Dir != "" && in.Draft.Usable {
		d := in.Draft.Dir
		r.Artifacts.DraftDir = &d
	}
	for _, p := range paths {
		r.Paths[p.Path] = p.Result
	}
	if cmd := ServeCommand(model, v, paths, in.Draft.Dir); cmd != "" {
		r.ServeCommand = &cmd
	}
	return r
}

func quantReport(q checkpoint.Quant) QuantReport {
	r := QuantReport{Mode: q.Mode}
	if r.Mode == "" {
		r.Mode = "unknown"
	}
	if q.Bits > 0 {
		b := q.Bits
		r.Bits = &b
	}
	if q.GroupSize > 0 {
		g := q.GroupSize
		r.GroupSize = &g
	}
	return r
}

func expertsReport(in *checkpoint.Inspection) ExpertsReport {
	var r ExpertsReport
	counts := in.Experts.PerLayer
	if len(counts) == 0 {
		counts = map[int]int{}
		for _, l := range in.Config.MoELayers() {
			counts[l] = in.Config.LayerExperts(l)
		}
	}
	most, uniform := 0, true
	for _, n := range counts {
		most = max(most, n)
	}
	for _, n := range counts {
		uniform = uniform && n == most
	}
	if most > 0 {
		r.Routed = &most
	}
	if !uniform {
		r.PerLayer = map[string]int{}
		for l, n := range counts {
			r.PerLayer[strconv.Itoa(l)] = n
		}
	}
	if k := in.Config.ExpertsPerToken; k > 0 {
		r.TopK = &k
	}
	return r
}

func memoryReport(m Memory) MemoryReport {
	r := MemoryReport{Verdict: m.Verdict, ContextLength: m.ContextLength}
	opt := func(v int64) *int64 {
		if v <= 0 {
			return nil
		}
		return &v
	}
	r.ExpertsBytes = opt(m.ExpertsBytes)
	r.NonExpertBytes = opt(m.NonExpertBytes)
	r.KVBytes = opt(m.KVBytes)
	r.WorkingSetBytes = opt(m.WorkingSetBytes)
	r.AvailableBytes = opt(m.AvailableBytes)
	return r
}

// Matrix evaluates every path for every registered architecture, without
// a checkpoint: map[model_type]map[path]result.
func (b Build) Matrix() map[string]map[capability.Path]capability.Result {
	out := map[string]map[capability.Path]capability.Result{}
	for _, a := range b.Registry.All() {
		row := map[capability.Path]capability.Result{}
		for _, p := range b.Paths(a, nil) {
			row[p.Path] = p.Result
		}
		out[a.ModelType] = row
	}
	return out
}
