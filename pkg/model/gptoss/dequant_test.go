package gptoss_test

import (
	"strings"
	"testing"

	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/stretchr/testify/require"
)

// TestDequantExact: the MXFP4 blocks decode, bit for bit, to the float32
// weights transformers computed the gpt_oss_mxfp4 reference with (E2M1
// nibbles, low nibble first, times 2^(scale-127)).
func TestDequantExact(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	fx, err := fixture.Load("gpt_oss_mxfp4")
	require.NoError(t, err)
	require.NotEmpty(t, fx.Dequant)
	cfg, err := modelconfig.Load(fx.Dir)
	require.NoError(t, err)
	w, err := model.OpenWeights(fx.Dir, cfg, b)
	require.NoError(t, err)
	defer w.Close()
	for base, want := range fx.Dequant {
		tt, err := w.Matrix(strings.TrimSuffix(base, "_blocks"))
		require.NoError(t, err, base)
		require.Equal(t, want.Shape, tt.Shape, "%s shape", base)
		got := tt.M.Dequantize()
		require.Equal(t, want.Data, got, "%s (%s)", base, tt.M.Format)
		t.Logf("%s (%s) reproduced exactly", base, tt.M.Format)
	}
}
