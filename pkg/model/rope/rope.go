// Package rope computes rotary-embedding parameters from a model config:
// the inverse frequencies of the default, partial, YaRN, linear and
// proportional variants, and the attention factor YaRN applies to cos and
// sin. The kernels rotate with them (kernels.RoPE, which Kernel builds);
// this package only does the arithmetic, following transformers'
// modeling_rope_utils.
package rope

import (
	"encoding/json"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/archconfig"
)

// Params are the rotary settings of one attention layer (the arithmetic
// lives in pkg/archconfig, which mach check uses without kernels).
type Params = archconfig.RopeParams

// Dict is one rope_parameters or rope_scaling object of a config.
type Dict = archconfig.RopeDict

// FromConfig reads the rotary settings of a text config: rope_parameters
// (transformers 5) or rope_scaling plus rope_theta (older configs), with
// partial_rotary_factor. headDim is the attention head size.
func FromConfig(text json.RawMessage, headDim int) (Params, error) {
	return archconfig.RopeFromConfig(text, headDim)
}

// Kernel reads a text config's rotary settings (FromConfig) for heads of
// headDim and returns them as the kernels rotate with them: the first
// Dims of each head, half-split.
func Kernel(text json.RawMessage, headDim int) (kernels.RoPE, error) {
	r, err := archconfig.RopeRotary(text, headDim)
	return kernels.RoPE(r), err
}
