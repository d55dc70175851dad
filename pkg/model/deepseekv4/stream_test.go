package deepseekv4_test

import (
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model/deepseekv4"
	"github.com/maniac-ai/mach/pkg/model/deepseekv4/deepseekv4test"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/stretchr/testify/require"
)

// Experts streamed from an expert_sidecar/ exported from DeepSeek's hub
// form (FP4 pairs with e8m0 scales) and from transformers' f32 form give
// exactly the resident logits, with a one-byte cache that forces a miss
// and an eviction on every use.
func TestStreamingMatchesResident(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 2})
	defer b.Close()
	fp8, _ := synthetic(t, b, deepseekv4test.Options{Seed: 23})
	fx, err := fixture.Load("deepseek_v4_fp8")
	require.NoError(t, err)
	base, err := fixture.Load("deepseek_v4")
	require.NoError(t, err)
	for _, dir := range []string{fp8, fx.Dir, base.Dir} {
		store, cfg, err := modeltest.Sidecar(t, dir, b)
		require.NoError(t, err, dir)
		streamed, err := deepseekv4.Load(t.Context(), dir, cfg, b, deepseekv4.LoadOptions{Store: store})
		require.NoError(t, err)
		resident := loadDir(t, dir, b)
		toks := prompt(11, 40, resident.Options().Vocab)
		want, _ := run(t, resident, toks, []int{17, 1, 22}, kernels.F32)
		got, _ := run(t, streamed, toks, []int{17, 1, 22}, kernels.F32)
		sameLogits(t, want, got, resident.Options().Vocab, "%s: streamed against resident", dir)
		st := store.Stats()
		require.Positive(t, st.Misses)
		require.Positive(t, st.Evictions)
		require.NoError(t, streamed.Close())
	}
}
