package checkpoint_test

import (
	"testing"

	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/stretchr/testify/require"
)

// DeepSeek-V4's hub form: quantization_config says fp8 (attention, shared
// experts) while the routed experts are FP4, which is no disagreement.
func TestInspectDeepSeekUpstreamForm(t *testing.T) {
	fx, err := fixture.Load("deepseek_v4_fp8")
	require.NoError(t, err)
	in, err := inspect(t, fx.Dir, checkpoint.Options{})
	require.NoError(t, err)
	require.Equal(t, checkpoint.PerExpert, in.Layout)
	require.Equal(t, "mxfp4", in.Quant.Mode)
	require.Equal(t, 4, in.Quant.Bits)
	require.Empty(t, in.Warnings)
}
