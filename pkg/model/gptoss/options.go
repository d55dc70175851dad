package gptoss

import (
	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/archconfig"
	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// The expert activation's fixed parameters (transformers' GptOssExperts and
// the registry's silu_limited): glu = g·σ(1.702·g), output (u + 1)·glu.
// The clamp limit is config.json's swiglu_limit.
const (
	Alpha        = 1.702
	UpOffset     = 1
	DefaultLimit = archconfig.GptOssDefaultLimit
	// DefaultWindow is sliding_window when config.json has none.
	DefaultWindow = archconfig.GptOssDefaultWindow
)

// Options are the hyper-parameters the forward pass uses: the config as
// archconfig reads and validates it (the same check mach check runs), with
// the rotary embedding and the activation as the kernels take them.
type Options struct {
	archconfig.GptOss
	RoPE kernels.RoPE
	// Act is the experts' clamped SwiGLU.
	Act kernels.Activation
}

// ParseOptions reads the options from a normalized config
// (archconfig.ParseGptOss).
func ParseOptions(cfg *modelconfig.Config) (Options, error) {
	c, err := archconfig.ParseGptOss(cfg)
	if err != nil {
		return Options{}, err
	}
	return Options{GptOss: c, RoPE: kernels.RoPE(c.RoPE),
		Act: kernels.Activation{Kind: kernels.SiLULimited, Alpha: Alpha, Limit: c.SwiGLULimit, UpOffset: UpOffset}}, nil
}
