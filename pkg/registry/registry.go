// Package registry holds the architectures mach knows: their static facts
// (activation, layout, default expert quantization, cache kind) and what this
// build implements for each. It is the single source for mach-archs,
// mach check, the model loader and GET /v1/capabilities.
//
// A Registry is a value: New builds one from explicit Arch values and
// Default builds the five architectures mach ships. Nothing registers itself
// at init time.
package registry

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/maniac-ai/mach/pkg/capability"
	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// Activation is the expert activation family, as the seed documents it.
type Activation string

// The activation variants.
const (
	// PlainSwiGLU is silu(gate)·up.
	PlainSwiGLU Activation = "plain_swiglu"
	// SiLULimited is clamped SwiGLU: gate = min(gate, limit), up = clamp(up,
	// ±limit), out = gate·sigmoid(alpha·gate)·(up + UpOffset).
	SiLULimited Activation = "silu_limited"
	// PlainGeGLU is gelu_tanh(gate)·up.
	PlainGeGLU Activation = "plain_geglu"
)

// ActivationParams are the numbers an activation variant needs. For
// SiLULimited the limit is read from config.json's LimitKey when present and
// falls back to DefaultLimit.
type ActivationParams struct {
	Alpha        float64 `json:"alpha,omitempty"`
	UpOffset     float64 `json:"up_offset,omitempty"`
	LimitKey     string  `json:"limit_config_key,omitempty"`
	DefaultLimit float64 `json:"default_limit,omitempty"`
}

// KVCacheKind is the kind of attention state an architecture keeps.
type KVCacheKind string

// The cache kinds.
const (
	KVStandard   KVCacheKind = "standard"
	KVHybridGDN  KVCacheKind = "hybrid_gdn"
	KVCompressed KVCacheKind = "compressed"
	KVRotating   KVCacheKind = "rotating"
)

// SpecdecKind is the speculative-decoding family an architecture uses; the
// empty kind means none (JSON null).
type SpecdecKind string

// The speculative-decoding kinds.
const (
	SpecdecNone SpecdecKind = ""
	// SpecdecV7 uses a separate draft directory (DFlash / EAGLE-style drafts).
	SpecdecV7 SpecdecKind = "specdec_v7"
	// MTPEagle3 drafts with the checkpoint's own MTP head.
	MTPEagle3 SpecdecKind = "mtp_eagle3"
)

// QuantMode is a routed-expert quantization family.
type QuantMode string

// The default quantization modes of routed experts.
const (
	QuantAffine QuantMode = "affine" // MLX affine, scale·q + bias per group
	QuantMXFP4  QuantMode = "mxfp4"  // e2m1 codes with an e8m0 scale per 32
)

// Support records what this build implements for an architecture. It is
// updated by the commits that land each piece, and tests in the packages that
// implement them check that the claims hold.
type Support struct {
	// Forward: the forward pass is implemented and passes its parity tests.
	Forward bool
	// Batching: continuous batching is implemented and tested with this
	// architecture's cache kind.
	Batching bool
	// PrefixReuse: prefix KV reuse is implemented and tested for this
	// architecture's cache kind.
	PrefixReuse bool
	// Streaming: the routed experts can be served from expert_sidecar/
	// (the architecture has a moe.StoreLoader in model/archs).
	Streaming bool
}

// Arch holds the static facts of one architecture.
type Arch struct {
	// ModelType is config.json's model_type.
	ModelType string
	// Name is a human name for the family.
	Name string
	// Activation and its parameters.
	Activation       Activation
	ActivationParams ActivationParams
	// Stacked: the upstream checkpoint's axis-0 stacked expert layout loads
	// directly; false means it must be sliced (mach-prune) first.
	Stacked bool
	// ExpertBias: routed experts carry per-expert Linear biases.
	ExpertBias bool
	// Wrapped: the text model's config nests under text_config.
	Wrapped bool
	// DefaultBits, DefaultGroup and DefaultQuant are the routed-expert
	// quantization fallbacks when a checkpoint does not say.
	DefaultBits  int
	DefaultGroup int
	DefaultQuant QuantMode
	// ModelModule is the Go package that implements the forward pass.
	ModelModule string
	// KVCache is the kind of attention state.
	KVCache KVCacheKind
	// Specdec is the speculative-decoding family.
	Specdec SpecdecKind
	// Support is what this build implements.
	Support Support
	// CheckConfig validates a config.json of this architecture as its
	// loader does (pkg/archconfig, which the model package builds its
	// options on): nil means the loader accepts it, an error is the
	// loader's own refusal. mach check, mach-serve's start-up and
	// mach-prune call it; nil CheckConfig accepts every config.
	CheckConfig func(*modelconfig.Config) error `json:"-"`
}

// ValidateConfig runs CheckConfig on cfg, or accepts it when the
// architecture has none.
func (a Arch) ValidateConfig(cfg *modelconfig.Config) error {
	if a.CheckConfig == nil || cfg == nil {
		return nil
	}
	return a.CheckConfig(cfg)
}

// ContinuousBatching derives the continuous-batching capability from the
// cache kind and what this build implements.
func (a Arch) ContinuousBatching() capability.Result {
	if !a.Support.Forward {
		return capability.Blockedf("%s forward pass not implemented in this build", a.ModelType)
	}
	if !a.Support.Batching {
		return capability.Blockedf("continuous batching with the %s KV cache not implemented in this build", a.KVCache)
	}
	switch a.KVCache {
	case KVStandard:
		return capability.Okf("standard KV cache is batch-compatible")
	case KVHybridGDN:
		return capability.Okf("hybrid GDN cache keeps per-sequence recurrent state")
	case KVRotating:
		return capability.Okf("rotating KV cache is batch-compatible")
	case KVCompressed:
		return capability.Okf("compressed KV cache keeps per-sequence windows, entries and compressor state")
	}
	return capability.Of(capability.Unknown, "unrecognised KV cache kind %q", a.KVCache)
}

// Registry is a set of architectures keyed by model_type.
type Registry struct {
	archs map[string]Arch
}

// ErrDuplicate is returned by New when two architectures share a model_type.
var ErrDuplicate = errors.New("duplicate architecture")

// New builds a registry from archs. Every arch must have a model_type,
// activation, cache kind and default bits/group; model types are unique.
func New(archs ...Arch) (*Registry, error) {
	r := &Registry{archs: make(map[string]Arch, len(archs))}
	for _, a := range archs {
		if err := a.validate(); err != nil {
			return nil, err
		}
		if _, dup := r.archs[a.ModelType]; dup {
			return nil, fmt.Errorf("registry: %q: %w", a.ModelType, ErrDuplicate)
		}
		r.archs[a.ModelType] = a
	}
	return r, nil
}

func (a Arch) validate() error {
	switch {
	case a.ModelType == "":
		return errors.New("registry: architecture without model_type")
	case a.Activation != PlainSwiGLU && a.Activation != SiLULimited && a.Activation != PlainGeGLU:
		return fmt.Errorf("registry: %s: unknown activation %q", a.ModelType, a.Activation)
	case a.KVCache == "":
		return fmt.Errorf("registry: %s: missing kv cache kind", a.ModelType)
	case a.DefaultBits <= 0 || a.DefaultGroup <= 0:
		return fmt.Errorf("registry: %s: default bits/group must be positive", a.ModelType)
	}
	return nil
}

// Lookup returns the architecture for a model_type.
func (r *Registry) Lookup(modelType string) (Arch, bool) {
	a, ok := r.archs[modelType]
	return a, ok
}

// Names returns the registered model types, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.archs))
	for n := range r.archs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// All returns the architectures sorted by model type.
func (r *Registry) All() []Arch {
	out := make([]Arch, 0, len(r.archs))
	for _, n := range r.Names() {
		out = append(out, r.archs[n])
	}
	return out
}

// UnknownError is returned for a model_type the registry does not hold.
type UnknownError struct {
	ModelType string
	Known     []string
}

func (e *UnknownError) Error() string {
	if e.ModelType == "" {
		return "config.json has no model_type; supported: " + strings.Join(e.Known, ", ")
	}
	return fmt.Sprintf("unsupported model_type %q; supported: %s", e.ModelType, strings.Join(e.Known, ", "))
}

// Require returns the architecture for modelType, or an *UnknownError
// listing the supported ones.
func (r *Registry) Require(modelType string) (Arch, error) {
	if a, ok := r.archs[modelType]; ok {
		return a, nil
	}
	return Arch{}, &UnknownError{ModelType: modelType, Known: r.Names()}
}
