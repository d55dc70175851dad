package gemma4

import (
	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/archconfig"
	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// Layer kinds of layer_types.
const (
	Sliding = modelconfig.SlidingAttention
	Full    = modelconfig.FullAttention
)

// Layer is the geometry of one decoder layer.
type Layer struct {
	// Kind is Sliding or Full.
	Kind string
	// Heads, KVHeads and HeadDim of the layer's attention: full layers use
	// the global head dim and, with attention_k_eq_v, the global KV heads.
	Heads, KVHeads, HeadDim int
	// Window is the sliding window (0 on full layers).
	Window int
	// KEqV: the layer has no v_proj; values are the raw key projection.
	KEqV bool
	// SharesKV is the layer whose keys and values this one attends over
	// (num_kv_shared_layers), or -1 when it computes its own.
	SharesKV int
	// Slot is the layer's cache layer (-1 on KV-shared layers, which own
	// none).
	Slot int
	// Intermediate is the dense MLP's width (doubled on KV-shared layers
	// with use_double_wide_mlp).
	Intermediate int
	// RoPE rotates q and k.
	RoPE kernels.RoPE
}

// Options are the hyper-parameters of a Gemma 4 MoE text model: the config
// as archconfig reads and validates it (the same check mach check runs),
// with each layer's rotary embedding as the kernels take it.
type Options struct {
	archconfig.Gemma4
	Layer []Layer
}

// Slots returns the number of cache layers (layers that own keys and
// values).
func (o Options) Slots() int {
	n := 0
	for _, l := range o.Layer {
		if l.Slot >= 0 {
			n++
		}
	}
	return n
}

// ParseOptions reads a gemma4 config (archconfig.ParseGemma4, which
// mirrors transformers 5.17's Gemma4TextConfig).
func ParseOptions(cfg *modelconfig.Config) (Options, error) {
	c, err := archconfig.ParseGemma4(cfg)
	if err != nil {
		return Options{}, err
	}
	o := Options{Gemma4: c, Layer: make([]Layer, len(c.Layer))}
	for i, l := range c.Layer {
		o.Layer[i] = Layer{Kind: l.Kind, Heads: l.Heads, KVHeads: l.KVHeads, HeadDim: l.HeadDim, Window: l.Window,
			KEqV: l.KEqV, SharesKV: l.SharesKV, Slot: l.Slot, Intermediate: l.Intermediate, RoPE: kernels.RoPE(l.RoPE)}
	}
	return o, nil
}
