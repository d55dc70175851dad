package gemma4_test

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/gemma4"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/stretchr/testify/require"
)

// The fixtures of this architecture (testdata/models/README.md):
// gemma4 (f32, wrapped, k=v full layer with one global KV head of dim 32,
// proportional RoPE, window 8), gemma4_mlx4 (MLX affine 4-bit, router
// 8-bit, experts.switch_glu) and gemma4_ple (per-layer inputs, the last
// two layers sharing earlier layers' keys and values). Their 48-token
// prompts are six sliding windows long.
var fixtures = []string{"gemma4", "gemma4_mlx4", "gemma4_ple"}

// backends are the CPU backend with its fast paths and the plain-Go
// reference; both must pass.
func backends() map[string]func() *cpu.Backend {
	return map[string]func() *cpu.Backend{
		"cpu":       func() *cpu.Backend { return cpu.New(cpu.Options{}) },
		"reference": func() *cpu.Backend { return cpu.New(cpu.Options{Reference: true}) },
	}
}

func load(t *testing.T, name string, b kernels.Backend) (*fixture.Model, *gemma4.Model) {
	t.Helper()
	fx, err := fixture.Load(name)
	require.NoError(t, err)
	cfg, err := modelconfig.Load(fx.Dir)
	require.NoError(t, err)
	m, err := gemma4.Load(t.Context(), fx.Dir, cfg, b, gemma4.LoadOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return fx, m
}

func newSeq(t *testing.T, m model.Model, capacity int, dt kernels.DType) model.Seq {
	t.Helper()
	c, err := m.NewCache(capacity, dt)
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

// TestParity checks, for every fixture and backend, the logits of every
// prompt position (relative L2 ≤ 1e-4 of transformers') and the greedy
// continuation decoded token by token with the rotating cache.
func TestParity(t *testing.T) {
	for _, name := range fixtures {
		for bname, mk := range backends() {
			t.Run(name+"/"+bname, func(t *testing.T) {
				b := mk()
				defer b.Close()
				fx, m := load(t, name, b)
				seq := newSeq(t, m, 256, kernels.F32)
				seq.Tokens, seq.Logits = fx.InputIDs, model.AllLogits
				out, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
				require.NoError(t, err)
				worst := 0.0
				for p := 0; p < fx.T; p++ {
					e := fixture.RelL2(out.Logits[0][p*fx.Vocab:(p+1)*fx.Vocab], fx.Row(p))
					worst = math.Max(worst, e)
					require.LessOrEqual(t, e, 1e-4, "%s: logits at position %d: relative L2 error %.3g", name, p, e)
				}
				t.Logf("%s on %s: max relative L2 of logits over %d positions = %.3g", name, b.Name(), fx.T, worst)

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

// TestLayerOutputs compares each decoder layer's output with
// transformers', which localizes a parity failure.
func TestLayerOutputs(t *testing.T) {
	for _, name := range []string{"gemma4", "gemma4_ple"} {
		t.Run(name, func(t *testing.T) {
			b := cpu.New(cpu.Options{})
			defer b.Close()
			fx, m := load(t, name, b)
			require.NotNil(t, fx.LayerOutputs)
			seq := newSeq(t, m, 256, kernels.F32)
			seq.Tokens = fx.InputIDs
			hs, err := m.Hidden(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
			require.NoError(t, err)
			require.Len(t, hs, int(fx.LayerOutputs.Shape[0]))
			per := fx.T * m.Info().Hidden
			for l, h := range hs {
				want := fx.LayerOutputs.Data[l*per : (l+1)*per]
				require.LessOrEqual(t, fixture.RelL2(h, want), 1e-5, "layer %d output", l)
			}
		})
	}
}

// decodeAlone prefills prompt and decodes n greedy tokens, returning the
// tokens and every step's logits.
func decodeAlone(t *testing.T, m model.Model, prompt []int32, n int) ([]int32, [][]float32) {
	seq := newSeq(t, m, 256, kernels.F32)
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
// ragged batch — a sequence joining while the others decode, prompts
// shorter and longer than the window — and requires the same tokens and
// bit-identical logits. KV-shared layers must read their own sequence's
// keys.
func TestBatchInvariance(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			b := cpu.New(cpu.Options{})
			defer b.Close()
			fx, m := load(t, name, b)
			prompts := [][]int32{fx.InputIDs, fx.InputIDs[5:30], fx.InputIDs[11:14], fx.InputIDs[20:]}
			const n = 10
			var alone [][]int32
			var aloneLogits [][][]float32
			for _, p := range prompts {
				toks, lg := decodeAlone(t, m, p, n)
				alone, aloneLogits = append(alone, toks), append(aloneLogits, lg)
			}
			seqs := make([]model.Seq, len(prompts))
			got := make([][]int32, len(prompts))
			for i := range seqs {
				seqs[i] = newSeq(t, m, 256, kernels.F32)
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
					require.Equal(t, aloneLogits[i][step], out.Logits[j], "sequence %d step %d logits differ between batched and alone", i, step)
					next := argmax(out.Logits[j])
					got[i] = append(got[i], next)
					seqs[i].Tokens = []int32{next}
				}
			}
			require.Equal(t, alone, got)
		})
	}
}

// TestChunkedPrefill feeds the prompt in uneven chunks — some shorter and
// some longer than the window of 8 — and requires, with an f32 cache, the
// reference logits at every position, and with an f16 cache the logits of
// one f16 pass over the whole prompt, bit for bit: the rotating cache keeps
// exactly the keys each sliding layer needs across chunks, and the
// KV-shared layers read them. (f16 keys and values are not compared with
// the f32 reference: rounding them moves hidden states by about 1e-3,
// more than these random fixtures' router margins of 2e-4 to 4e-4, so an
// expert choice may flip.)
func TestChunkedPrefill(t *testing.T) {
	chunks := []int{3, 1, 12, 7, 1, 9, 15}
	for _, name := range fixtures {
		for _, dt := range []kernels.DType{kernels.F32, kernels.F16} {
			t.Run(name+"/"+dt.String(), func(t *testing.T) {
				b := cpu.New(cpu.Options{})
				defer b.Close()
				fx, m := load(t, name, b)
				whole := newSeq(t, m, 256, dt)
				whole.Tokens, whole.Logits = fx.InputIDs, model.AllLogits
				out, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{whole}})
				require.NoError(t, err)
				want := slices.Clone(out.Logits[0])

				seq := newSeq(t, m, 256, dt)
				pos := 0
				for _, n := range chunks {
					seq.Tokens, seq.Logits = fx.InputIDs[pos:pos+n], model.AllLogits
					out, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
					require.NoError(t, err)
					for j := 0; j < n; j++ {
						got := out.Logits[0][j*fx.Vocab : (j+1)*fx.Vocab]
						if dt == kernels.F32 {
							e := fixture.RelL2(got, fx.Row(pos+j))
							require.LessOrEqual(t, e, 1e-4, "position %d", pos+j)
						}
						require.Equal(t, want[(pos+j)*fx.Vocab:(pos+j+1)*fx.Vocab], got, "position %d: chunked and whole-prompt logits differ", pos+j)
					}
					pos += n
				}
				require.Equal(t, fx.T, pos)
				require.Equal(t, fx.T, seq.Cache.Len())
				// The sliding layers' buffers stay bounded by the window and
				// the largest chunk, not the context.
				rc := seq.Cache.(*kvcache.Rotating)
				require.Less(t, rc.WindowRows(), fx.T)
			})
		}
	}
}

func TestCacheFullLeavesCacheUnchanged(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	fx, m := load(t, "gemma4_ple", b)
	seq := newSeq(t, m, 10, kernels.F32)
	seq.Tokens, seq.Logits = fx.InputIDs[:8], model.LastLogits
	_, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.NoError(t, err)
	seq.Tokens = fx.InputIDs[8:11]
	_, err = m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.ErrorIs(t, err, kvcache.ErrCacheFull)
	require.Equal(t, 8, seq.Cache.Len())
	seq.Tokens = []int32{int32(fx.Vocab)}
	_, err = m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.Error(t, err, "token id beyond the vocabulary")
	require.Equal(t, 8, seq.Cache.Len())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	seq.Tokens = fx.InputIDs[8:9]
	_, err = m.Forward(ctx, &model.Batch{Seqs: []model.Seq{seq}})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 8, seq.Cache.Len())
	// The cache still continues the sequence correctly.
	seq.Tokens, seq.Logits = fx.InputIDs[8:10], model.AllLogits
	out, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.NoError(t, err)
	for j := 0; j < 2; j++ {
		require.LessOrEqual(t, fixture.RelL2(out.Logits[0][j*fx.Vocab:(j+1)*fx.Vocab], fx.Row(8+j)), 1e-4)
	}
}

func TestInfo(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	for _, name := range fixtures {
		fx, m := load(t, name, b)
		info := m.Info()
		require.Equal(t, fx.Vocab, info.Vocab, name)
		require.Equal(t, gemma4.ModelType, info.ModelType, name)
		require.Positive(t, info.WeightBytes, name)
		require.Less(t, info.ActiveBytes, info.WeightBytes, name)
		t.Logf("%s: %d weight bytes, %d active per token", name, info.WeightBytes, info.ActiveBytes)
	}
}

// Sliding layers keep a window buffer; a cache whose capacity does not
// exceed the window stores them like full layers, and computes the same.
func TestCacheSpec(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	fx, m := load(t, "gemma4", b)
	var windows []int
	for _, l := range m.CacheSpec(256, kernels.F32).Layers {
		windows = append(windows, l.Window)
	}
	require.Equal(t, []int{8, 8, 8, 0}, windows)
	for _, l := range m.CacheSpec(8, kernels.F32).Layers {
		require.Zero(t, l.Window)
	}
	_, ple := load(t, "gemma4_ple", b)
	require.Len(t, ple.CacheSpec(256, kernels.F32).Layers, 2, "the two KV-shared layers own no cache layer")

	seq := newSeq(t, m, 8, kernels.F32)
	seq.Tokens, seq.Logits = fx.InputIDs[:8], model.AllLogits
	out, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.NoError(t, err)
	for p := 0; p < 8; p++ {
		require.LessOrEqual(t, fixture.RelL2(out.Logits[0][p*fx.Vocab:(p+1)*fx.Vocab], fx.Row(p)), 1e-4)
	}
}
