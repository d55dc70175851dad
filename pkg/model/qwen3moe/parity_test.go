package qwen3moe_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/qwen3moe"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/stretchr/testify/require"
)

// The fixtures of this architecture and their variants.
var fixtures = []string{
	"qwen3_moe", "qwen3_moe_bf16", "qwen3_moe_perexpert", "qwen3_moe_stacked",
	"qwen3_moe_mlx4", "qwen3_moe_mlx8", "qwen3_moe_nonorm",
}

// backends are the CPU backend with its fast paths and the plain-Go
// reference; both must pass.
func backends() map[string]func() *cpu.Backend {
	return map[string]func() *cpu.Backend{
		"cpu":       func() *cpu.Backend { return cpu.New(cpu.Options{}) },
		"reference": func() *cpu.Backend { return cpu.New(cpu.Options{Reference: true}) },
	}
}

func load(t *testing.T, name string, b kernels.Backend) (*fixture.Model, *qwen3moe.Model) {
	t.Helper()
	fx, err := fixture.Load(name)
	require.NoError(t, err)
	cfg, err := modelconfig.Load(fx.Dir)
	require.NoError(t, err)
	m, err := qwen3moe.Load(t.Context(), fx.Dir, cfg, b, qwen3moe.LoadOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return fx, m
}

func newCache(t *testing.T, m model.Model, dt kernels.DType) model.Seq {
	t.Helper()
	c, err := m.NewCache(256, dt)
	require.NoError(t, err)
	return model.Seq{Cache: c}
}

func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}

// TestParity checks, for every fixture, the logits of every prompt position
// (relative L2 ≤ 1e-4) and the greedy continuation decoded with the cache.
func TestParity(t *testing.T) {
	for _, name := range fixtures {
		for bname, mk := range backends() {
			t.Run(name+"/"+bname, func(t *testing.T) {
				b := mk()
				defer b.Close()
				fx, m := load(t, name, b)
				seq := newCache(t, m, kernels.F32)
				seq.Tokens, seq.Logits = fx.InputIDs, model.AllLogits
				out, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
				require.NoError(t, err)
				worst := 0.0
				for p := 0; p < fx.T; p++ {
					got := out.Logits[0][p*fx.Vocab : (p+1)*fx.Vocab]
					e := fixture.RelL2(got, fx.Row(p))
					worst = math.Max(worst, e)
					require.LessOrEqual(t, e, 1e-4, "%s: logits at position %d: relative L2 error %.3g", name, p, e)
				}
				t.Logf("%s on %s: max relative L2 of logits over %d positions = %.3g", name, b.Name(), fx.T, worst)

				// Greedy decode with the cache.
				next := argmax(out.Logits[0][(fx.T-1)*fx.Vocab:])
				var greedy []int32
				for len(greedy) < len(fx.Greedy) {
					greedy = append(greedy, next)
					seq.Tokens, seq.Logits = []int32{next}, model.LastLogits
					o, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
					require.NoError(t, err)
					next = argmax(o.Logits[0])
				}
				require.Equal(t, fx.Greedy, greedy, "%s: greedy continuation", name)
			})
		}
	}
}

// TestLayerOutputs compares each decoder layer's output with transformers'
// (where the fixture has them), which localizes a parity failure.
func TestLayerOutputs(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	fx, m := load(t, "qwen3_moe", b)
	require.NotNil(t, fx.LayerOutputs)
	seq := newCache(t, m, kernels.F32)
	seq.Tokens = fx.InputIDs
	hs, err := m.Hidden(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.NoError(t, err)
	per := fx.T * m.Info().Hidden
	for l, h := range hs {
		want := fx.LayerOutputs.Data[l*per : (l+1)*per]
		require.LessOrEqual(t, fixture.RelL2(h, want), 1e-5, "layer %d output", l)
	}
}

// TestChunkedPrefillAndF16Cache: a prompt fed in uneven chunks with an f16
// cache still matches the reference within the bar.
func TestChunkedPrefillAndF16Cache(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	fx, m := load(t, "qwen3_moe_mlx4", b)
	seq := newCache(t, m, kernels.F16)
	chunks := []int{7, 1, 20, fx.T - 28}
	pos := 0
	for _, n := range chunks {
		seq.Tokens, seq.Logits = fx.InputIDs[pos:pos+n], model.AllLogits
		out, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
		require.NoError(t, err)
		for j := 0; j < n; j++ {
			e := fixture.RelL2(out.Logits[0][j*fx.Vocab:(j+1)*fx.Vocab], fx.Row(pos+j))
			require.LessOrEqual(t, e, 5e-3, "position %d with an f16 cache (f16 keys and values round at 2^-11)", pos+j)
		}
		pos += n
	}
	require.Equal(t, fx.T, seq.Cache.Len())
}

// decodeAlone prefills prompt and decodes n greedy tokens, returning the
// tokens and every step's logits.
func decodeAlone(t *testing.T, m model.Model, prompt []int32, n int) ([]int32, [][]float32) {
	seq := newCache(t, m, kernels.F32)
	seq.Tokens, seq.Logits = prompt, model.LastLogits
	var toks []int32
	var logits [][]float32
	for len(toks) < n {
		out, err := m.Forward(context.Background(), &model.Batch{Seqs: []model.Seq{seq}})
		require.NoError(t, err)
		logits = append(logits, slices.Clone(out.Logits[0]))
		next := argmax(out.Logits[0])
		toks = append(toks, next)
		seq.Tokens = []int32{next}
	}
	return toks, logits
}

// TestBatchInvariance runs prompts one at a time and then together in one
// ragged batch — including a sequence that joins while the others decode —
// and requires the same tokens and bit-identical logits.
func TestBatchInvariance(t *testing.T) {
	for _, name := range []string{"qwen3_moe", "qwen3_moe_mlx4", "qwen3_moe_nonorm"} {
		for bname, mk := range backends() {
			t.Run(name+"/"+bname, func(t *testing.T) {
				b := mk()
				defer b.Close()
				fx, m := load(t, name, b)
				prompts := [][]int32{fx.InputIDs, fx.InputIDs[5:30], fx.InputIDs[11:14], fx.InputIDs[20:]}
				const n = 8
				var alone [][]int32
				var aloneLogits [][][]float32
				for _, p := range prompts {
					toks, lg := decodeAlone(t, m, p, n)
					alone, aloneLogits = append(alone, toks), append(aloneLogits, lg)
				}
				// Together: the last prompt joins two steps late, so its
				// prefill shares steps with the others' decoding.
				seqs := make([]model.Seq, len(prompts))
				got := make([][]int32, len(prompts))
				for i := range seqs {
					seqs[i] = newCache(t, m, kernels.F32)
					seqs[i].Tokens, seqs[i].Logits = prompts[i], model.LastLogits
				}
				const late = 3
				for stepNo := 0; ; stepNo++ {
					var batch model.Batch
					var who []int
					for i := range seqs {
						if (i == late && stepNo < 2) || len(got[i]) == n {
							continue
						}
						batch.Seqs = append(batch.Seqs, seqs[i])
						who = append(who, i)
					}
					if len(who) == 0 {
						break
					}
					out, err := m.Forward(t.Context(), &batch)
					require.NoError(t, err)
					for j, i := range who {
						step := len(got[i])
						require.Equal(t, aloneLogits[i][step], out.Logits[j],
							"%s: sequence %d step %d logits differ between batched and alone", name, i, step)
						next := argmax(out.Logits[j])
						got[i] = append(got[i], next)
						seqs[i].Tokens = []int32{next}
					}
				}
				require.Equal(t, alone, got, "%s: batched tokens", name)
			})
		}
	}
}

func TestCacheFullLeavesCacheUnchanged(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	fx, m := load(t, "qwen3_moe", b)
	c, err := m.NewCache(10, kernels.F32)
	require.NoError(t, err)
	seq := model.Seq{Cache: c, Tokens: fx.InputIDs[:8], Logits: model.LastLogits}
	_, err = m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.NoError(t, err)
	seq.Tokens = fx.InputIDs[8:11]
	_, err = m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.Error(t, err)
	require.Equal(t, 8, c.Len())
	seq.Tokens = []int32{int32(fx.Vocab)}
	_, err = m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.Error(t, err, "token id beyond the vocabulary")
	require.Equal(t, 8, c.Len())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	seq.Tokens = fx.InputIDs[8:9]
	_, err = m.Forward(ctx, &model.Batch{Seqs: []model.Seq{seq}})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 8, c.Len())
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
