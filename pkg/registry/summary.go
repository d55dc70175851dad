package registry

import "github.com/maniac-ai/mach/pkg/capability"

// Summary is the machine-readable arch_summary: the same object mach-archs
// --json prints and GET /v1/capabilities embeds. Keys are stable snake_case.
type Summary struct {
	ModelType          string            `json:"model_type"`
	Name               string            `json:"name"`
	Swiglu             Activation        `json:"swiglu"`
	SwigluParams       *ActivationParams `json:"swiglu_params"`
	Stacked            bool              `json:"stacked"`
	ExpertBias         bool              `json:"expert_bias"`
	Wrapped            bool              `json:"wrapped"`
	Bits               int               `json:"bits"`
	Group              int               `json:"group"`
	QuantMode          QuantMode         `json:"quant_mode"`
	ModelModule        string            `json:"model_module"`
	KVCacheKind        KVCacheKind       `json:"kv_cache_kind"`
	SpecdecKind        *SpecdecKind      `json:"specdec_kind"`
	ContinuousBatching capability.Result `json:"continuous_batching"`
	Implemented        bool              `json:"implemented"`
}

// Summary returns the arch_summary of a.
func (a Arch) Summary() Summary {
	s := Summary{
		ModelType:          a.ModelType,
		Name:               a.Name,
		Swiglu:             a.Activation,
		Stacked:            a.Stacked,
		ExpertBias:         a.ExpertBias,
		Wrapped:            a.Wrapped,
		Bits:               a.DefaultBits,
		Group:              a.DefaultGroup,
		QuantMode:          a.DefaultQuant,
		ModelModule:        a.ModelModule,
		KVCacheKind:        a.KVCache,
		ContinuousBatching: a.ContinuousBatching(),
		Implemented:        a.Support.Forward,
	}
	if a.ActivationParams != (ActivationParams{}) {
		p := a.ActivationParams
		s.SwigluParams = &p
	}
	if a.Specdec != SpecdecNone {
		k := a.Specdec
		s.SpecdecKind = &k
	}
	return s
}
