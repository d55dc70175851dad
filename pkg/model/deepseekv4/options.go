package deepseekv4

import (
	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/archconfig"
	"github.com/maniac-ai/mach/pkg/kvcache/kvsize"
	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// Kind is a layer's attention kind.
type Kind = archconfig.DeepSeekV4Kind

// The attention kinds (transformers' layer_types; DeepSeek's
// compress_ratios 0, 4 and 128).
const (
	// Sliding: the sliding window only.
	Sliding = archconfig.DeepSeekV4Sliding
	// CSA: compressed sparse attention — overlapping compressed entries
	// (two series per token) chosen per query by the lightning indexer.
	CSA = archconfig.DeepSeekV4CSA
	// HCA: heavily compressed attention — every closed entry.
	HCA = archconfig.DeepSeekV4HCA
)

// Options are the hyper-parameters of the forward pass: the config as
// archconfig reads and validates it (the same check mach check runs), with
// the rotary embeddings, router scoring and activation as the kernels take
// them.
type Options struct {
	archconfig.DeepSeekV4
	Score kernels.ScoreFunc
	// Act is the clamped SwiGLU of the routed and the shared experts.
	Act kernels.Activation
	// MainRoPE rotates sliding-only layers, CompressRoPE the compressed
	// layers' queries, keys and entries; IndexRoPE is CompressRoPE over
	// the indexer's heads.
	MainRoPE, CompressRoPE, IndexRoPE kernels.RoPE
}

// RoPE returns the rotary embedding of layer i's attention.
func (o Options) RoPE(i int) kernels.RoPE {
	if o.Kinds[i] == Sliding {
		return o.MainRoPE
	}
	return o.CompressRoPE
}

// CacheLayers returns the shapes of the compressed cache's layers.
func (o Options) CacheLayers() []kvsize.CompressedLayer {
	out := make([]kvsize.CompressedLayer, o.Layers)
	for i := range out {
		l := kvsize.CompressedLayer{HeadDim: o.HeadDim, Window: o.Window, Ratio: o.Ratios[i]}
		if o.Kinds[i] == CSA {
			l.Overlap, l.IndexDim = true, o.IndexDim
		}
		out[i] = l
	}
	return out
}

// ParseOptions reads the options from a normalized config
// (archconfig.ParseDeepSeekV4). The layer schedules (attention kinds, hash
// layers) must be in config.json: the references' defaults disagree, so
// mach never guesses them.
func ParseOptions(cfg *modelconfig.Config) (Options, error) {
	c, err := archconfig.ParseDeepSeekV4(cfg)
	if err != nil {
		return Options{}, err
	}
	o := Options{DeepSeekV4: c, Score: kernels.SqrtSoftplus,
		Act:      kernels.Activation{Kind: kernels.SiLULimited, Alpha: 1, Limit: c.SwiGLULimit},
		MainRoPE: kernels.RoPE(c.MainRoPE), CompressRoPE: kernels.RoPE(c.CompressRoPE), IndexRoPE: kernels.RoPE(c.IndexRoPE)}
	if c.Scoring == "sigmoid" {
		o.Score = kernels.Sigmoid
	}
	return o, nil
}
