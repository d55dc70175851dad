package gptoss_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model/gptoss"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/maniac-ai/mach/pkg/prune"
	"github.com/maniac-ai/mach/pkg/pruneplan"
	"github.com/stretchr/testify/require"
)

// streamMatchesResident exports dir's expert sidecar, streams its experts
// through a one-byte cache (raised to one layer of experts, so experts miss
// and are evicted as the layers take turns), and requires exactly the
// logits and tokens of the same checkpoint loaded resident, over fx's
// prompt and greedy length. It returns the resident tokens.
func streamMatchesResident(t *testing.T, b kernels.Backend, dir string, fx *fixture.Model) []int32 {
	t.Helper()
	store, cfg, err := modeltest.Sidecar(t, dir, b)
	require.NoError(t, err, dir)
	resident := modeltest.LoadDir(t, dir, b, gptoss.Loader)
	wantLogits, wantToks := modeltest.Generate(t, resident, newSeq(t, resident, kernels.F32), fx.InputIDs, len(fx.Greedy))
	m, err := gptoss.Load(t.Context(), dir, cfg, b, gptoss.LoadOptions{Store: store})
	require.NoError(t, err)
	defer m.Close()
	gotLogits, gotToks := modeltest.Generate(t, m, newSeq(t, m, kernels.F32), fx.InputIDs, len(fx.Greedy))
	require.Equal(t, wantToks, gotToks)
	require.True(t, slices.Equal(wantLogits, gotLogits), "streamed logits differ from resident ones")
	st := store.Stats()
	require.Positive(t, st.Evictions)
	require.Positive(t, st.Misses)
	return wantToks
}

// Experts streamed from an expert_sidecar/ give exactly the resident logits
// and tokens, for every gpt-oss expert form a sidecar can hold: the
// original MXFP4 checkpoint (interleaved gate/up blocks with a fused
// gate_up bias), MLX's split form (separate gate and up, each with its own
// bias) and mach-prune's per-expert output (gate and up always separate,
// with their biases) of the MXFP4, f32 and MLX checkpoints — whole and
// pruned to different expert counts per layer. The transformers f32 form
// stores its experts input-major, which the sidecar refuses with the
// reason.
func TestStreamingMatchesResident(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 2})
	defer b.Close()
	for _, name := range []string{"gpt_oss_mxfp4", "gpt_oss_mlx"} {
		t.Run(name, func(t *testing.T) {
			fx, err := fixture.Load(name)
			require.NoError(t, err)
			require.Equal(t, fx.Greedy, streamMatchesResident(t, b, fx.Dir, fx))
		})
	}
	for _, name := range []string{"gpt_oss", "gpt_oss_mxfp4", "gpt_oss_mlx"} {
		fx, err := fixture.Load(name)
		require.NoError(t, err)
		// Layers keep 2 (top-k), 8, 5 and 3 of the 8 experts.
		uneven := &pruneplan.Candidate{ID: "uneven", NumExperts: 8, Keep: map[int][]int{
			0: {1, 6}, 1: {0, 1, 2, 3, 4, 5, 6, 7}, 2: {0, 2, 3, 5, 7}, 3: {1, 4, 6}}}
		for _, c := range []*pruneplan.Candidate{nil, uneven} {
			label := name + "/pruned_all"
			if c != nil {
				label = name + "/pruned_" + c.ID
			}
			t.Run(label, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "pruned")
				_, err := prune.Run(t.Context(), prune.Options{Source: fx.Dir, Output: out, Candidate: c})
				require.NoError(t, err)
				toks := streamMatchesResident(t, b, out, fx)
				if c == nil {
					// Keeping every expert is a pure layout conversion.
					require.Equal(t, fx.Greedy, toks)
				}
			})
		}
	}

	fx, err := fixture.Load("gpt_oss")
	require.NoError(t, err)
	_, _, err = modeltest.Sidecar(t, fx.Dir, b)
	require.ErrorIs(t, err, fault.ErrUnsupported)
}
