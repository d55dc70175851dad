package qwen35moe

import (
	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/archconfig"
	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// ChunkSize is the chunk length of the chunked delta rule in prefill
// steps (transformers' and FLA's default).
const ChunkSize = 64

// Options are the hyper-parameters the forward pass uses: the config as
// archconfig reads and validates it (the same check mach check runs), with
// the rotary embedding as the kernels take it.
type Options struct {
	archconfig.Qwen35MoE
	RoPE kernels.RoPE
}

// ParseOptions reads the options from a normalized config
// (archconfig.ParseQwen35MoE).
func ParseOptions(cfg *modelconfig.Config) (Options, error) {
	c, err := archconfig.ParseQwen35MoE(cfg)
	if err != nil {
		return Options{}, err
	}
	return Options{Qwen35MoE: c, RoPE: kernels.RoPE(c.RoPE)}, nil
}
