package qwen3moe_test

import (
	"testing"

	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/stretchr/testify/require"
)

// TestDequantExact: the loader and quant's dequantizer reproduce, bit for
// bit, the float32 weights transformers computed the quantized fixtures'
// references with.
func TestDequantExact(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	for _, name := range []string{"qwen3_moe_mlx4", "qwen3_moe_mlx8"} {
		fx, err := fixture.Load(name)
		require.NoError(t, err)
		require.NotEmpty(t, fx.Dequant, "%s has dequantization samples", name)
		cfg, err := modelconfig.Load(fx.Dir)
		require.NoError(t, err)
		w, err := model.OpenWeights(fx.Dir, cfg, b)
		require.NoError(t, err)
		for base, want := range fx.Dequant {
			tt, err := w.Matrix(base)
			require.NoError(t, err, "%s: %s", name, base)
			require.Equal(t, want.Shape, tt.Shape, "%s: %s shape", name, base)
			got := tt.M.Dequantize()
			require.Equal(t, len(want.Data), len(got))
			for i := range got {
				if got[i] != want.Data[i] {
					require.Failf(t, "dequantized weight differs", "%s: %s element %d: %g, reference %g", name, base, i, got[i], want.Data[i])
				}
			}
			t.Logf("%s: %s (%s) reproduced exactly", name, base, tt.M.Format)
		}
		require.NoError(t, w.Close())
	}
}
