package qwen3moe

import (
	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/archconfig"
	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// Options are the hyper-parameters the forward pass uses: the config as
// archconfig reads and validates it (the same check mach check runs), with
// the rotary embedding as the kernels take it.
type Options struct {
	archconfig.Qwen3MoE
	RoPE kernels.RoPE
}

// ParseOptions reads the options from a normalized config
// (archconfig.ParseQwen3MoE).
func ParseOptions(cfg *modelconfig.Config) (Options, error) {
	c, err := archconfig.ParseQwen3MoE(cfg)
	if err != nil {
		return Options{}, err
	}
	return Options{Qwen3MoE: c, RoPE: kernels.RoPE(c.RoPE)}, nil
}
