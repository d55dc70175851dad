package gemma4_test

import (
	"slices"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/model/gemma4"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/stretchr/testify/require"
)

// Experts streamed from an expert_sidecar/ written by mach-export-sidecar
// (the fused f32 and MLX switch_glu layouts) give exactly the resident
// logits and tokens, with a cache of one layer that forces misses and
// evictions on every step.
func TestStreamingMatchesResident(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 2})
	defer b.Close()
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			fx, resident := load(t, name, b)
			n := len(fx.Greedy)
			wantLogits, wantToks := modeltest.Generate(t, resident, modeltest.NewSeq(t, resident, fx.T+n, kernels.F32), fx.InputIDs, n)
			require.Equal(t, fx.Greedy, wantToks)

			store, cfg, err := modeltest.Sidecar(t, fx.Dir, b)
			require.NoError(t, err)
			m, err := gemma4.Load(t.Context(), fx.Dir, cfg, b, gemma4.LoadOptions{Store: store})
			require.NoError(t, err)
			defer m.Close()
			gotLogits, gotToks := modeltest.Generate(t, m, modeltest.NewSeq(t, m, fx.T+n, kernels.F32), fx.InputIDs, n)
			require.Equal(t, wantToks, gotToks)
			require.True(t, slices.Equal(wantLogits, gotLogits), "streamed logits differ from resident ones")
			st := store.Stats()
			require.Positive(t, st.Evictions)
			require.Positive(t, st.Misses)
		})
	}
}
