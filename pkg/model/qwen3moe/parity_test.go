package qwen3moe_test

import (
	"fmt"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/maniac-ai/mach/pkg/model/qwen3moe"
	"github.com/stretchr/testify/require"
)

// The fixtures of this architecture and their variants.
var fixtures = []string{
	"qwen3_moe", "qwen3_moe_bf16", "qwen3_moe_perexpert", "qwen3_moe_stacked",
	"qwen3_moe_mlx4", "qwen3_moe_mlx8", "qwen3_moe_nonorm",
}

func load(t testing.TB, name string, b kernels.Backend) (*fixture.Model, *qwen3moe.Model) {
	t.Helper()
	fx, m := modeltest.Load(t, name, b, qwen3moe.Loader)
	return fx, m.(*qwen3moe.Model)
}

// TestParity checks, for every fixture, the logits of every prompt position
// (relative L2 ≤ 1e-4) and the greedy continuation decoded with the cache.
func TestParity(t *testing.T) {
	modeltest.ForEach(t, fixtures, func(t *testing.T, name string, b kernels.Backend) {
		fx, m := load(t, name, b)
		require.Equal(t, fx.Greedy, modeltest.Parity(t, m, fx, 1e-4), "%s: greedy continuation", name)
	})
}

// TestLayerOutputs compares each decoder layer's output with transformers'
// (where the fixture has them), which localizes a parity failure.
func TestLayerOutputs(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	fx, m := load(t, "qwen3_moe", b)
	modeltest.LayerOutputs(t, m, fx, fx.T*m.Info().Hidden, 1e-5)
}

// TestChunkedPrefillAndF16Cache: a prompt fed in uneven chunks with an f16
// cache still matches the reference within the bar.
func TestChunkedPrefillAndF16Cache(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	fx, m := load(t, "qwen3_moe_mlx4", b)
	seq := modeltest.NewSeq(t, m, 256, kernels.F16)
	chunks := []int{7, 1, 20, fx.T - 28}
	pos := 0
	for _, n := range chunks {
		seq.Tokens, seq.Logits = fx.InputIDs[pos:pos+n], model.AllLogits
		out := modeltest.Forward(t, m, seq)
		for j := 0; j < n; j++ {
			e := fixture.RelL2(out.Logits[0][j*fx.Vocab:(j+1)*fx.Vocab], fx.Row(pos+j))
			require.LessOrEqual(t, e, 5e-3, "position %d with an f16 cache (f16 keys and values round at 2^-11)", pos+j)
		}
		pos += n
	}
	require.Equal(t, fx.T, seq.Cache.Len())
}

// TestBatchInvariance runs prompts one at a time and then together in one
// ragged batch — including a sequence that joins while the others decode —
// and requires the same tokens and bit-identical logits.
func TestBatchInvariance(t *testing.T) {
	modeltest.ForEach(t, []string{"qwen3_moe", "qwen3_moe_mlx4", "qwen3_moe_nonorm"}, func(t *testing.T, name string, b kernels.Backend) {
		fx, m := load(t, name, b)
		prompts := [][]int32{fx.InputIDs, fx.InputIDs[5:30], fx.InputIDs[11:14], fx.InputIDs[20:]}
		// The last prompt joins two steps late, so its prefill shares
		// steps with the others' decoding.
		modeltest.BatchInvariance(t, m, prompts, 8, 3, 2)
	})
}

// TestCacheFullLeavesCacheUnchanged: a step refused for capacity, a bad
// token or cancellation leaves the cache as it was.
func TestCacheFullLeavesCacheUnchanged(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	fx, m := load(t, "qwen3_moe", b)
	modeltest.RefusedSteps(t, m, fx, 10, 8)
}

func TestInfo(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	for _, name := range fixtures {
		fx, m := load(t, name, b)
		info := m.Info()
		require.Equal(t, fx.Vocab, info.Vocab, name)
		require.Positive(t, info.WeightBytes, name)
		require.Less(t, info.ActiveBytes, info.WeightBytes, name)
		t.Log(fmt.Sprintf("%s: %d weight bytes, %d active per token", name, info.WeightBytes, info.ActiveBytes))
	}
}
