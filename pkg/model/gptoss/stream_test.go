package gptoss_test

import (
	"slices"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model/gptoss"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/stretchr/testify/require"
)

// Experts streamed from an expert_sidecar/ exported from the original
// MXFP4 checkpoint (interleaved gate/up blocks, biases) give exactly the
// resident logits and tokens, with a one-byte cache that forces a miss and
// an eviction on every use. Sidecars of the other gpt-oss forms are refused
// with the reason.
func TestStreamingMatchesResident(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 2})
	defer b.Close()
	fx, err := fixture.Load("gpt_oss_mxfp4")
	require.NoError(t, err)
	store, cfg, err := modeltest.Sidecar(t, fx.Dir, b)
	require.NoError(t, err)
	_, resident := load(t, "gpt_oss_mxfp4", b)
	wantLogits, wantToks := modeltest.Generate(t, resident, newSeq(t, resident, kernels.F32), fx.InputIDs, len(fx.Greedy))
	require.Equal(t, fx.Greedy, wantToks)
	m, err := gptoss.Load(t.Context(), fx.Dir, cfg, b, gptoss.LoadOptions{Store: store})
	require.NoError(t, err)
	defer m.Close()
	gotLogits, gotToks := modeltest.Generate(t, m, newSeq(t, m, kernels.F32), fx.InputIDs, len(fx.Greedy))
	require.Equal(t, wantToks, gotToks)
	require.True(t, slices.Equal(wantLogits, gotLogits), "streamed logits differ from resident ones")
	st := store.Stats()
	require.Positive(t, st.Evictions)
	require.Positive(t, st.Misses)

	for _, name := range []string{"gpt_oss", "gpt_oss_mlx"} {
		fx, err := fixture.Load(name)
		require.NoError(t, err)
		_, _, err = modeltest.Sidecar(t, fx.Dir, b)
		require.ErrorIs(t, err, fault.ErrUnsupported, name)
	}
}
