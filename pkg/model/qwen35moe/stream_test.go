package qwen35moe_test

import (
	"slices"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/maniac-ai/mach/pkg/model/qwen35moe"
	"github.com/stretchr/testify/require"
)

// Experts streamed from an expert_sidecar/ written by mach-export-sidecar
// (per-expert f32 and MLX 4-bit switch_mlp layouts) give exactly the
// resident logits and tokens, with a cache of one layer that forces misses
// and evictions on every step; the shared experts stay resident.
func TestStreamingMatchesResident(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 2})
	defer b.Close()
	for _, name := range []string{"qwen3_5_moe", "qwen3_5_moe_mlx4"} {
		t.Run(name, func(t *testing.T) {
			fx, resident := load(t, name, b)
			wantLogits, wantToks := modeltest.Generate(t, resident, newSeq(t, resident, kernels.F32), fx.InputIDs, len(fx.Greedy))
			require.Equal(t, fx.Greedy, wantToks)

			store, cfg, err := modeltest.Sidecar(t, fx.Dir, b)
			require.NoError(t, err)
			m, err := qwen35moe.Load(t.Context(), fx.Dir, cfg, b, qwen35moe.LoadOptions{Store: store})
			require.NoError(t, err)
			defer m.Close()
			gotLogits, gotToks := modeltest.Generate(t, m, newSeq(t, m, kernels.F32), fx.InputIDs, len(fx.Greedy))
			require.Equal(t, wantToks, gotToks)
			require.True(t, slices.Equal(wantLogits, gotLogits), "streamed logits differ from resident ones")
			st := store.Stats()
			require.Positive(t, st.Evictions)
			require.Positive(t, st.Misses)
		})
	}
}
