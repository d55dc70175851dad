package qwen35moe_test

import (
	"log/slog"
	"slices"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/expertstream"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/qwen35moe"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/sidecar/export"
	"github.com/stretchr/testify/require"
)

// generate runs the prompt with every position's logits, then n greedy
// tokens with the cache.
func generate(t *testing.T, m model.Model, prompt []int32, n int) ([]float32, []int32) {
	t.Helper()
	seq := newSeq(t, m, kernels.F32)
	seq.Tokens, seq.Logits = prompt, model.AllLogits
	all := slices.Clone(forward(t, m, seq).Logits[0])
	last := all[len(all)-m.Info().Vocab:]
	var toks []int32
	for len(toks) < n {
		tok := argmax(last)
		toks = append(toks, tok)
		seq.Tokens, seq.Logits = []int32{tok}, model.LastLogits
		last = forward(t, m, seq).Logits[0]
	}
	return all, toks
}

// Experts streamed from an expert_sidecar/ written by mach-export-sidecar
// (per-expert f32 and MLX 4-bit switch_mlp layouts) give exactly the
// resident logits and tokens, with a cache of one layer that forces misses
// and evictions on every step; the shared experts stay resident.
func TestStreamingMatchesResident(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 2})
	defer b.Close()
	for _, name := range []string{"qwen3_5_moe", "qwen3_5_moe_mlx4"} {
		t.Run(name, func(t *testing.T) {
			fx, err := fixture.Load(name)
			require.NoError(t, err)
			sc := t.TempDir()
			_, err = export.Run(t.Context(), export.Options{Checkpoint: fx.Dir, Output: sc})
			require.NoError(t, err)
			cfg, err := modelconfig.Load(fx.Dir)
			require.NoError(t, err)

			_, resident := load(t, name, b)
			wantLogits, wantToks := generate(t, resident, fx.InputIDs, len(fx.Greedy))
			require.Equal(t, fx.Greedy, wantToks)

			store, err := expertstream.Open(sc, b, expertstream.Options{CacheBytes: 1, Hidden: cfg.HiddenSize, Width: cfg.MoEIntermediateSize,
				Log: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			m, err := qwen35moe.Load(t.Context(), fx.Dir, cfg, b, qwen35moe.LoadOptions{Store: store})
			require.NoError(t, err)
			defer m.Close()
			gotLogits, gotToks := generate(t, m, fx.InputIDs, len(fx.Greedy))
			require.Equal(t, wantToks, gotToks)
			require.True(t, slices.Equal(wantLogits, gotLogits), "streamed logits differ from resident ones")
			st := store.Stats()
			require.Positive(t, st.Evictions)
			require.Positive(t, st.Misses)
		})
	}
}
