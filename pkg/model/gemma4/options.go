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

// Layer is the geometry of one decoder layer (archconfig's, which mach
// check validates too) with its rotary embedding as the kernels take it.
type Layer struct {
	archconfig.Gemma4Layer
	// RoPE rotates q and k (archconfig's Rotary converted; it shadows the
	// embedded field).
	RoPE kernels.RoPE
}

// Options are the hyper-parameters of a Gemma 4 MoE text model: the config
// as archconfig reads and validates it (the same check mach check runs),
// with each layer's rotary embedding as the kernels take it.
type Options struct {
	archconfig.Gemma4
	Layer []Layer
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
		o.Layer[i] = Layer{Gemma4Layer: l, RoPE: kernels.RoPE(l.RoPE)}
	}
	return o, nil
}
