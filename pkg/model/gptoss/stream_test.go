package gptoss_test

import (
	"log/slog"
	"slices"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/expertstream"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/gptoss"
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
	out, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.NoError(t, err)
	all := slices.Clone(out.Logits[0])
	last := all[len(all)-m.Info().Vocab:]
	var toks []int32
	for len(toks) < n {
		tok := argmax(last)
		toks = append(toks, tok)
		seq.Tokens, seq.Logits = []int32{tok}, model.LastLogits
		o, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
		require.NoError(t, err)
		last = o.Logits[0]
	}
	return all, toks
}

// Experts streamed from an expert_sidecar/ exported from the original
// MXFP4 checkpoint (interleaved gate/up blocks, biases) give exactly the
// resident logits and tokens, with a one-byte cache that forces a miss and
// an eviction on every use. Sidecars of the other gpt-oss forms are refused
// with the reason.
func TestStreamingMatchesResident(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 2})
	defer b.Close()
	open := func(name string) (*fixture.Model, *modelconfig.Config, *expertstream.Store, error) {
		fx, err := fixture.Load(name)
		require.NoError(t, err)
		sc := t.TempDir()
		_, err = export.Run(t.Context(), export.Options{Checkpoint: fx.Dir, Output: sc})
		require.NoError(t, err)
		cfg, err := modelconfig.Load(fx.Dir)
		require.NoError(t, err)
		store, err := expertstream.Open(sc, b, expertstream.Options{CacheBytes: 1, Hidden: cfg.HiddenSize, Width: cfg.MoEIntermediateSize,
			Log: slog.New(slog.DiscardHandler)})
		return fx, cfg, store, err
	}
	fx, cfg, store, err := open("gpt_oss_mxfp4")
	require.NoError(t, err)
	_, resident := load(t, "gpt_oss_mxfp4", b)
	wantLogits, wantToks := generate(t, resident, fx.InputIDs, len(fx.Greedy))
	require.Equal(t, fx.Greedy, wantToks)
	m, err := gptoss.Load(t.Context(), fx.Dir, cfg, b, gptoss.LoadOptions{Store: store})
	require.NoError(t, err)
	defer m.Close()
	gotLogits, gotToks := generate(t, m, fx.InputIDs, len(fx.Greedy))
	require.Equal(t, wantToks, gotToks)
	require.True(t, slices.Equal(wantLogits, gotLogits), "streamed logits differ from resident ones")
	st := store.Stats()
	require.Positive(t, st.Evictions)
	require.Positive(t, st.Misses)

	for _, name := range []string{"gpt_oss", "gpt_oss_mlx"} {
		_, _, _, err := open(name)
		require.ErrorIs(t, err, fault.ErrUnsupported, name)
	}
}
