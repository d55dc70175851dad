// Package preflight decides, before any weight is loaded, which serving
// paths an architecture (and optionally an inspected checkpoint) can run in
// this build, whether the result is servable, and whether it fits in memory.
// mach check prints these answers and mach-serve's start-up calls the same
// functions, so the prediction and the runtime never drift.
//
// What this build implements lives in one value, Build: the per-arch
// registry.Support flags plus the build-wide Features. When a feature lands,
// flip its flag in ThisBuild (and update the golden matrix); nothing else
// changes.
package preflight

import (
	"fmt"
	"strings"

	"github.com/maniac-ai/mach/pkg/capability"
	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/registry"
)

// Features are the build-wide capabilities (per-architecture ones are in
// registry.Arch.Support).
type Features struct {
	// HTTPServer: mach-serve's OpenAI-compatible API.
	HTTPServer bool
	// ExpertStreaming: the expert store streams experts from
	// expert_sidecar/ with a byte-budgeted cache.
	ExpertStreaming bool
	// ResidentStacked: resident serving straight from stacked expert
	// tensors.
	ResidentStacked bool
	// ResidentExperts: the resident expert store binds every routed expert
	// from a per-expert (or engine) layout's own tensors and keeps it in
	// memory, as mach-generate and mach-serve do without --streaming. No
	// serving path of the seed's vocabulary names it, so it shows in
	// openai_http's reason.
	ResidentExperts bool
	// BF16Streaming: streaming unquantized (bf16/f16/f32) experts.
	BF16Streaming bool
	// GGUFExperts2Bit: kernels for IQ2_XXS / IQ2_XS / Q2_K experts.
	GGUFExperts2Bit bool
	// Specdec: speculative decoding (draft directory or MTP head).
	Specdec bool
	// TurboQuantKV: the quantized (TurboQuant) KV cache.
	TurboQuantKV bool
	// NativeToolGrammar: the native Qwen tool-call grammar path.
	NativeToolGrammar bool
}

// Build is what this build of mach implements.
type Build struct {
	Registry *registry.Registry
	Features Features
}

// ThisBuild returns what this build implements. Every feature below is
// false because none of them exists yet; the commit that lands a feature
// flips its flag here (and regenerates the --all-archs golden file).
func ThisBuild(reg *registry.Registry) Build {
	return Build{
		Registry: reg,
		Features: Features{
			HTTPServer:        true, // mach-serve (pkg/server, pkg/scheduler)
			ExpertStreaming:   true, // pkg/expertstream, mach-generate --streaming
			ResidentStacked:   true, // moe.BindExperts binds stacked, fused and input-major expert tensors in place
			ResidentExperts:   true, // moe.Resident over per-expert tensors
			BF16Streaming:     true, // the same store streams f32/f16/bf16 sidecars
			GGUFExperts2Bit:   false,
			Specdec:           false,
			TurboQuantKV:      false,
			NativeToolGrammar: false,
		},
	}
}

// toolGrammarArchs have a native tool-call grammar (Qwen3-Coder XML and
// Qwen JSON tool calls); other architectures use their own parsers.
var toolGrammarArchs = map[string]bool{"qwen3_moe": true, "qwen3_5_moe": true}

// PathResult is one row of a report.
type PathResult struct {
	Path capability.Path
	capability.Result
}

// Paths evaluates every serving path, in report order. in is nil for the
// architecture-only matrix (mach check --all-archs).
func (b Build) Paths(arch registry.Arch, in *checkpoint.Inspection) []PathResult {
	out := make([]PathResult, 0, len(capability.Paths()))
	for _, p := range capability.Paths() {
		out = append(out, PathResult{Path: p, Result: b.Gate(p, arch, in)})
	}
	return out
}

// Gate returns one path's status for arch and the optional inspected
// checkpoint. The checks run in a fixed order: n/a (the path cannot apply
// to this architecture or checkpoint), blocked (this build cannot do it),
// needs_artifact (it would work once an artifact exists), then ok or
// unknown (the checkpoint decides).
func (b Build) Gate(p capability.Path, arch registry.Arch, in *checkpoint.Inspection) capability.Result {
	r := b.gate(p, arch, in)
	if r.Status == capability.OK {
		// A config.json the architecture's loader refuses blocks every
		// path that would otherwise run, with the loader's reason.
		if refused, ok := ConfigRefusal(arch, in); ok {
			return refused
		}
	}
	return r
}

// ConfigRefusal runs the architecture's config validation
// (registry.Arch.CheckConfig, the function its loader builds its options
// on) on the inspected checkpoint's config.json and returns the blocked
// result carrying the loader's reason when the loader would refuse it.
func ConfigRefusal(arch registry.Arch, in *checkpoint.Inspection) (capability.Result, bool) {
	if in == nil || in.Config == nil {
		return capability.Result{}, false
	}
	if err := arch.ValidateConfig(in.Config); err != nil {
		return capability.Blockedf("the %s loader refuses this config.json: %v", arch.ModelType, err), true
	}
	return capability.Result{}, false
}

func (b Build) gate(p capability.Path, arch registry.Arch, in *checkpoint.Inspection) capability.Result {
	switch p {
	case capability.OpenAIHTTP:
		return b.openAIHTTP(arch, in)
	case capability.ExpertStreaming:
		return b.expertStreaming(arch, in)
	case capability.ResidentStacked:
		return b.residentStacked(arch, in)
	case capability.BF16Streaming:
		return b.bf16Streaming(arch, in)
	case capability.GGUFExperts2Bit:
		return b.ggufExperts(arch, in)
	case capability.Specdec:
		return b.specdec(arch, in)
	case capability.ContinuousBatching:
		// The registry derives it from the cache kind and Support, the
		// same answer mach-archs and /v1/capabilities give.
		return arch.ContinuousBatching()
	case capability.TurboquantKV:
		if r, blocked := b.needs(arch, b.Features.TurboQuantKV, "TurboQuant KV cache"); blocked {
			return r
		}
		return capability.Okf("TurboQuant KV cache supported for the %s cache", arch.KVCache)
	case capability.PrefixKVReuse:
		if r, blocked := b.needs(arch, true, ""); blocked {
			return r
		}
		if !arch.Support.PrefixReuse {
			return capability.Blockedf("prefix KV reuse with the %s cache not implemented in this build", arch.KVCache)
		}
		return capability.Okf("%s cache supports prefix trim reuse", arch.KVCache)
	case capability.NativeToolGrammar:
		if !toolGrammarArchs[arch.ModelType] {
			return capability.Of(capability.NA, "native tool grammar is Qwen-only")
		}
		if r, blocked := b.needs(arch, b.Features.NativeToolGrammar, "native Qwen tool/grammar path"); blocked {
			return r
		}
		return capability.Okf("native Qwen tool/grammar path")
	}
	return capability.Of(capability.Unknown, "unknown path %q", p)
}

// needs returns a blocked result when arch has no forward pass or the
// feature is off.
func (b Build) needs(arch registry.Arch, feature bool, what string) (capability.Result, bool) {
	if !arch.Support.Forward {
		return capability.Blockedf("%s forward pass not implemented in this build", arch.ModelType), true
	}
	if !feature {
		return capability.Blockedf("%s not implemented in this build", what), true
	}
	return capability.Result{}, false
}

// weightPaths are the ways of getting routed experts into memory; a
// checkpoint is servable over HTTP when one of them is ok.
var weightPaths = []capability.Path{
	capability.ExpertStreaming, capability.ResidentStacked, capability.BF16Streaming, capability.GGUFExperts2Bit,
}

func (b Build) openAIHTTP(arch registry.Arch, in *checkpoint.Inspection) capability.Result {
	if r, blocked := b.needs(arch, b.Features.HTTPServer, "OpenAI HTTP server (mach-serve)"); blocked {
		return r
	}
	var pending []string
	var undecided bool
	for _, p := range weightPaths {
		r := b.Gate(p, arch, in)
		switch r.Status {
		case capability.OK:
			return capability.Okf("registered architecture")
		case capability.NeedsArtifact:
			pending = append(pending, r.Reason)
		case capability.Unknown:
			undecided = true
		}
	}
	if b.Features.ResidentExperts && in != nil && !in.Quant.IsGGUF2Bit() {
		switch {
		case in.WeightsInspected && (in.Layout == checkpoint.PerExpert || in.Layout == checkpoint.Engine):
			return capability.Okf("registered architecture (routed experts resident in memory)")
		case in.WeightsInspected && in.Layout == checkpoint.Stacked && !arch.Stacked:
			pending = append(pending, fmt.Sprintf("slice the stacked experts with mach-prune first (%s loads the per-expert layout resident)", arch.ModelType))
		case !in.WeightsInspected:
			undecided = true // per-expert weights would load resident
		}
	}
	switch {
	case in == nil || undecided:
		return capability.Okf("registered architecture (the serving path depends on the checkpoint)")
	case len(pending) > 0:
		return capability.Of(capability.NeedsArtifact, "%s", pending[0])
	}
	return capability.Blockedf("no serving path can load this checkpoint (layout %s, experts %s)", in.Layout, in.Quant)
}

func (b Build) expertStreaming(arch registry.Arch, in *checkpoint.Inspection) capability.Result {
	if r, blocked := b.needs(arch, b.Features.ExpertStreaming, "expert streaming"); blocked {
		return r
	}
	if !arch.Support.Streaming {
		return capability.Blockedf("expert streaming for %s not implemented in this build", arch.ModelType)
	}
	if in == nil {
		return capability.Okf("expert-sidecar streaming into a byte-budgeted cache (mach-generate --streaming)")
	}
	switch s := in.Sidecar; {
	case s.Valid && !streamableQuant(s.Layout.Quant.Mode):
		if in.Quant.IsGGUF2Bit() {
			if r, blocked := b.needs(arch, b.Features.GGUFExperts2Bit, "2-bit GGUF expert kernels"); blocked {
				return r
			}
			return capability.Okf("expert-sidecar streaming of %s experts", in.Quant.Mode)
		}
		return capability.Blockedf("streaming %s experts is not implemented in this build (f32, f16, bf16, MLX affine and mxfp4 are)", s.Layout.Quant.Mode)
	case s.Valid:
		return capability.Okf("expert-sidecar streaming of %s experts (mach-generate --streaming)", s.Layout.Quant)
	case s.Present:
		return capability.Of(capability.NeedsArtifact, "expert_sidecar/ is unusable (%v); re-run mach-export-sidecar", s.Err)
	case in.Layout == checkpoint.Stacked && !arch.Stacked:
		return capability.Of(capability.NeedsArtifact, "slice the stacked experts with mach-prune, then write expert_sidecar/ with mach-export-sidecar")
	}
	return capability.Of(capability.NeedsArtifact, "needs expert_sidecar/ (mach-export-sidecar)")
}

// streamableQuant: the expert store computes with sidecars of this mode.
func streamableQuant(mode string) bool {
	switch mode {
	case "f32", "f16", "bf16", "affine", "mxfp4":
		return true
	}
	return false
}

func (b Build) residentStacked(arch registry.Arch, in *checkpoint.Inspection) capability.Result {
	if in != nil && (in.Layout == checkpoint.PerExpert || in.Layout == checkpoint.Engine) {
		return capability.Of(capability.NA, "%s layout: experts are not stacked", in.Layout)
	}
	if r, blocked := b.needs(arch, b.Features.ResidentStacked, "resident stacked-expert serving"); blocked {
		return r
	}
	if !arch.Stacked {
		return capability.Blockedf("%s stacked experts must be sliced with mach-prune first", arch.ModelType)
	}
	if in == nil || in.Layout == checkpoint.Unknown {
		return capability.Of(capability.Unknown, "depends on the checkpoint layout")
	}
	return capability.Okf("stacked-layout checkpoint usable for resident serving")
}

func (b Build) bf16Streaming(arch registry.Arch, in *checkpoint.Inspection) capability.Result {
	if in != nil && in.Quant.Quantized() {
		return capability.Of(capability.NA, "routed experts are %s, not bf16", in.Quant)
	}
	if r, blocked := b.needs(arch, b.Features.BF16Streaming, "bf16 expert streaming"); blocked {
		return r
	}
	if !arch.Support.Streaming {
		return capability.Blockedf("expert streaming for %s not implemented in this build", arch.ModelType)
	}
	switch {
	case in == nil || in.Quant.Mode == "unknown" || in.Quant.Mode == "":
		return capability.Of(capability.Unknown, "depends on the checkpoint's expert dtype")
	case !in.Sidecar.Valid:
		return capability.Of(capability.NeedsArtifact, "bf16 streaming reads expert_sidecar/ (mach-export-sidecar)")
	}
	return capability.Okf("%s experts streamed from expert_sidecar/", in.Quant.Mode)
}

// ggufBlock is the row granularity of the 2-bit GGUF types.
const ggufBlock = 256

func (b Build) ggufExperts(arch registry.Arch, in *checkpoint.Inspection) capability.Result {
	if in != nil {
		cfg := in.Config
		h, i := cfg.HiddenSize, cfg.MoEIntermediateSize
		if h > 0 && i > 0 && (h%ggufBlock != 0 || i%ggufBlock != 0) {
			return capability.Of(capability.NA, "expert rows (hidden %d, expert width %d) are not multiples of %d, which IQ2/Q2_K blocks need", h, i, ggufBlock)
		}
		if !in.Quant.IsGGUF2Bit() {
			return capability.Of(capability.NA, "no gguf expert sidecar / format (mach convert makes one)")
		}
	}
	if r, blocked := b.needs(arch, b.Features.GGUFExperts2Bit, "2-bit GGUF expert kernels"); blocked {
		return r
	}
	if in == nil {
		return capability.Of(capability.Unknown, "depends on the checkpoint (a 2-bit GGUF expert sidecar)")
	}
	return capability.Okf("2-bit GGUF experts (%s) in expert_sidecar/", in.Quant.Mode)
}

func (b Build) specdec(arch registry.Arch, in *checkpoint.Inspection) capability.Result {
	if arch.Specdec == registry.SpecdecNone {
		return capability.Of(capability.NA, "%s has no speculative-decoding family", arch.ModelType)
	}
	if r, blocked := b.needs(arch, b.Features.Specdec, "speculative decoding"); blocked {
		return r
	}
	switch arch.Specdec {
	case registry.SpecdecV7:
		switch {
		case in == nil || in.Draft.Dir == "":
			return capability.Of(capability.NeedsArtifact, "specdec_v7 draft requires a usable --draft-dir")
		case !in.Draft.Usable:
			return capability.Of(capability.NeedsArtifact, "specdec_v7 draft unusable: %s", in.Draft.Reason)
		}
		return capability.Okf("specdec_v7 with draft %s", in.Draft.Dir)
	case registry.MTPEagle3:
		switch {
		case in == nil:
			return capability.Of(capability.NeedsArtifact, "mtp_eagle3 needs the checkpoint's MTP head (mtp.* tensors)")
		case in.MTPTensors || (!in.WeightsInspected && in.Config.MTPLayers > 0):
			return capability.Okf("mtp_eagle3 with the checkpoint's MTP head")
		}
		return capability.Of(capability.NeedsArtifact, "mtp_eagle3 needs the checkpoint's MTP head (mtp.* tensors), which this checkpoint lacks")
	}
	return capability.Of(capability.Unknown, "unknown speculative-decoding kind %q", arch.Specdec)
}

// Verdict is the overall answer for a checkpoint or architecture.
type Verdict struct {
	Supported bool
	// Reason explains a negative verdict.
	Reason string
}

// String renders the verdict line.
func (v Verdict) String() string {
	if v.Supported {
		return "supported"
	}
	return "not supported: " + v.Reason
}

// Decide returns the verdict: supported only when openai_http is ok, that
// is, the architecture is registered and this build can serve it.
func Decide(arch registry.Arch, paths []PathResult) Verdict {
	for _, p := range paths {
		if p.Path != capability.OpenAIHTTP {
			continue
		}
		switch p.Status {
		case capability.OK:
			return Verdict{Supported: true}
		case capability.NeedsArtifact:
			return Verdict{Reason: "registered, but this checkpoint needs an artifact first: " + p.Reason}
		}
		return Verdict{Reason: "registered, but not servable by this build: " + p.Reason}
	}
	return Verdict{Reason: fmt.Sprintf("%s: no openai_http result", arch.ModelType)}
}

// ServeCommand suggests the mach-serve invocation for a supported
// checkpoint, or "" when it is not servable.
func ServeCommand(model string, v Verdict, paths []PathResult, draftDir string) string {
	if !v.Supported {
		return ""
	}
	args := []string{"mach-serve", "--checkpoint", shellQuote(model)}
	status := map[capability.Path]capability.Status{}
	for _, p := range paths {
		status[p.Path] = p.Status
	}
	if status[capability.ExpertStreaming] == capability.OK {
		args = append(args, "--streaming")
	}
	switch status[capability.Specdec] {
	case capability.OK:
		if draftDir != "" {
			args = append(args, "--draft-dir", shellQuote(draftDir))
		}
	case capability.NA:
	default:
		args = append(args, "--target-only")
	}
	return strings.Join(args, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@+=,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
