package gptoss_test

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
	"github.com/maniac-ai/mach/pkg/model/gptoss"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/stretchr/testify/require"
)

// The fixtures of this architecture: f32 and bf16 as transformers saves
// them (input-major interleaved experts), the original MXFP4 blocks, and
// MLX's mxfp4 experts with 8-bit affine attention. Each has a 48-token
// prompt and sliding window 8, so sliding layers see a window much shorter
// than the prompt.
var fixtures = []string{"gpt_oss", "gpt_oss_bf16", "gpt_oss_mxfp4", "gpt_oss_mlx"}

// backends are the CPU backend with its fast paths and the plain-Go
// reference; both must pass.
func backends() map[string]func() *cpu.Backend {
	return map[string]func() *cpu.Backend{
		"cpu":       func() *cpu.Backend { return cpu.New(cpu.Options{}) },
		"reference": func() *cpu.Backend { return cpu.New(cpu.Options{Reference: true}) },
	}
}

func load(t testing.TB, name string, b kernels.Backend) (*fixture.Model, *gptoss.Model) {
	t.Helper()
	fx, err := fixture.Load(name)
	require.NoError(t, err)
	cfg, err := modelconfig.Load(fx.Dir)
	require.NoError(t, err)
	m, err := gptoss.Load(context.Background(), fx.Dir, cfg, b, gptoss.LoadOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return fx, m
}

func newSeq(t testing.TB, m model.Model, dt kernels.DType) model.Seq {
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
// (relative L2 ≤ 1e-4) and the greedy continuation decoded with the
// rotating cache.
func TestParity(t *testing.T) {
	for _, name := range fixtures {
		for bname, mk := range backends() {
			t.Run(name+"/"+bname, func(t *testing.T) {
				b := mk()
				defer b.Close()
				fx, m := load(t, name, b)
				seq := newSeq(t, m, kernels.F32)
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

// TestLayerOutputs compares each decoder layer's output with transformers'
// (where the fixture has them), which localizes a parity failure.
func TestLayerOutputs(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	fx, m := load(t, "gpt_oss", b)
	require.NotNil(t, fx.LayerOutputs)
	seq := newSeq(t, m, kernels.F32)
	seq.Tokens = fx.InputIDs
	hs, err := m.Hidden(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.NoError(t, err)
	per := fx.T * m.Info().Hidden
	for l, h := range hs {
		want := fx.LayerOutputs.Data[l*per : (l+1)*per]
		require.LessOrEqual(t, fixture.RelL2(h, want), 1e-5, "layer %d output", l)
	}
}

// run feeds tokens to seq in steps of the given sizes (the rest in one
// step when the sizes run out) and returns every token's logits.
func run(t testing.TB, m model.Model, seq model.Seq, tokens []int32, sizes ...int) [][]float32 {
	t.Helper()
	var out [][]float32
	vocab := m.Info().Vocab
	for len(tokens) > 0 {
		n := len(tokens)
		if len(sizes) > 0 {
			n, sizes = min(sizes[0], n), sizes[1:]
		}
		seq.Tokens, seq.Logits = tokens[:n], model.AllLogits
		o, err := m.Forward(context.Background(), &model.Batch{Seqs: []model.Seq{seq}})
		require.NoError(t, err)
		for j := 0; j < n; j++ {
			out = append(out, slices.Clone(o.Logits[0][j*vocab:(j+1)*vocab]))
		}
		tokens = tokens[n:]
	}
	return out
}

// TestRotatingCacheMatchesStandard: the rotating cache (sliding layers keep
// only their window) gives the very same logits as a standard cache that
// keeps every token, whatever the step sizes — chunks shorter and longer
// than the window, then decoding.
func TestRotatingCacheMatchesStandard(t *testing.T) {
	for _, name := range []string{"gpt_oss", "gpt_oss_mxfp4"} {
		for bname, mk := range backends() {
			t.Run(name+"/"+bname, func(t *testing.T) {
				b := mk()
				defer b.Close()
				fx, m := load(t, name, b)
				rs := m.CacheSpec(128, kernels.F32)
				ss := kvcache.Spec{DType: kernels.F32, Capacity: 128}
				for _, l := range rs.Layers {
					ss.Layers = append(ss.Layers, l.KV)
				}
				std, err := kvcache.NewStandard(b, ss)
				require.NoError(t, err)
				want := run(t, m, model.Seq{Cache: std}, fx.InputIDs)
				for _, sizes := range [][]int{{48}, {3, 5, 1, 20, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 9, 9}, {8, 8, 8, 8, 8, 8}} {
					rot, err := m.NewCache(128, kernels.F32)
					require.NoError(t, err)
					got := run(t, m, model.Seq{Cache: rot}, fx.InputIDs, sizes...)
					require.Equal(t, want, got, "%s: steps %v: rotating cache differs from a standard one", name, sizes)
					require.LessOrEqual(t, rot.(*kvcache.Rotating).WindowRows(), 2*7+48, "sliding layers hold the window and one step")
				}
			})
		}
	}
}

// TestChunkedPrefillF16Cache: a prompt fed in uneven chunks with f16 and
// bf16 caches gives the same logits as a standard cache of that type; with
// f16 (keys and values round at 2^-11) it stays near the reference. bf16
// (2^-8) moves this random tiny model's logits by up to ~13%, so only the
// equivalence is checked there.
func TestChunkedPrefillF16Cache(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	fx, m := load(t, "gpt_oss_mxfp4", b)
	for _, c := range []struct {
		dt  kernels.DType
		tol float64
	}{{kernels.F16, 1e-2}, {kernels.BF16, math.Inf(1)}} {
		seq := newSeq(t, m, c.dt)
		got := run(t, m, seq, fx.InputIDs, 7, 1, 20)
		worst := 0.0
		for p, lg := range got {
			e := fixture.RelL2(lg, fx.Row(p))
			worst = math.Max(worst, e)
			require.LessOrEqual(t, e, c.tol, "position %d with a %s cache", p, c.dt)
		}
		t.Logf("%s cache: max relative L2 %.3g", c.dt, worst)
		require.Equal(t, fx.T, seq.Cache.Len())
		ss := kvcache.Spec{DType: c.dt, Capacity: 64}
		for _, l := range m.CacheSpec(64, c.dt).Layers {
			ss.Layers = append(ss.Layers, l.KV)
		}
		std, err := kvcache.NewStandard(b, ss)
		require.NoError(t, err)
		require.Equal(t, run(t, m, model.Seq{Cache: std}, fx.InputIDs, 7, 1, 20), got, "%s: rotating vs standard", c.dt)
	}
}

// TestPrefixReuseBeyondWindow: a cache that went far past a shared prefix
// longer than the window is cut back to it (from a snapshot, since the
// sliding buffers moved on) and continued with other tokens; every logit
// equals that of a fresh run over prefix + continuation.
func TestPrefixReuseBeyondWindow(t *testing.T) {
	for bname, mk := range backends() {
		t.Run(bname, func(t *testing.T) {
			b := mk()
			defer b.Close()
			fx, m := load(t, "gpt_oss_mxfp4", b)
			const prefix = 30 // window 8
			c, err := m.NewCache(256, kernels.F32)
			require.NoError(t, err)
			rot := c.(*kvcache.Rotating)
			require.NoError(t, rot.SnapshotAt(prefix))
			seq := model.Seq{Cache: c}
			_ = run(t, m, seq, fx.InputIDs, 16, 16, 16) // the prefix ends inside a step
			_ = run(t, m, seq, fx.Greedy, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
			require.Equal(t, prefix, rot.Restorable(prefix+3), "only the snapshot reaches back that far")
			require.NoError(t, c.Truncate(prefix))

			other := append([]int32(nil), fx.Greedy[:10]...)
			slices.Reverse(other)
			got := run(t, m, seq, other, 4, 1, 1, 1, 1, 1, 1)

			fresh, err := m.NewCache(256, kernels.F32)
			require.NoError(t, err)
			full := append(append([]int32(nil), fx.InputIDs[:prefix]...), other...)
			want := run(t, m, model.Seq{Cache: fresh}, full)
			require.Equal(t, want[prefix:], got, "continuation after a reused prefix longer than the window")
			for p := 0; p < prefix; p++ {
				require.LessOrEqual(t, fixture.RelL2(want[p], fx.Row(p)), 1e-4)
			}
		})
	}
}

// decodeAlone prefills prompt and decodes n greedy tokens, returning the
// tokens and every step's logits.
func decodeAlone(t *testing.T, m model.Model, prompt []int32, n int) ([]int32, [][]float32) {
	seq := newSeq(t, m, kernels.F32)
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

// TestBatchInvariance runs prompts of different lengths — shorter and
// longer than the window — one at a time and then together in one ragged
// batch, one joining while the others decode past the window, and requires
// the same tokens and bit-identical logits.
func TestBatchInvariance(t *testing.T) {
	for _, name := range []string{"gpt_oss", "gpt_oss_mxfp4", "gpt_oss_mlx"} {
		for bname, mk := range backends() {
			t.Run(name+"/"+bname, func(t *testing.T) {
				b := mk()
				defer b.Close()
				fx, m := load(t, name, b)
				prompts := [][]int32{fx.InputIDs, fx.InputIDs[5:30], fx.InputIDs[11:14], fx.InputIDs[20:], fx.InputIDs[40:47]}
				const n = 12 // decoding crosses the window of 8 for the short prompts
				var alone [][]int32
				var aloneLogits [][][]float32
				for _, p := range prompts {
					toks, lg := decodeAlone(t, m, p, n)
					alone, aloneLogits = append(alone, toks), append(aloneLogits, lg)
				}
				seqs := make([]model.Seq, len(prompts))
				got := make([][]int32, len(prompts))
				for i := range seqs {
					seqs[i] = newSeq(t, m, kernels.F32)
					seqs[i].Tokens, seqs[i].Logits = prompts[i], model.LastLogits
				}
				const late = 3
				for stepNo := 0; ; stepNo++ {
					var batch model.Batch
					var who []int
					for i := range seqs {
						if (i == late && stepNo < 4) || len(got[i]) == n {
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

// TestFailedStepLeavesCacheUnchanged: a step refused for capacity, a bad
// token or cancellation leaves every cache as it was.
func TestFailedStepLeavesCacheUnchanged(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	fx, m := load(t, "gpt_oss", b)
	c, err := m.NewCache(20, kernels.F32)
	require.NoError(t, err)
	seq := model.Seq{Cache: c, Tokens: fx.InputIDs[:16], Logits: model.LastLogits}
	_, err = m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.NoError(t, err)
	seq.Tokens = fx.InputIDs[16:21]
	_, err = m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.ErrorIs(t, err, kvcache.ErrCacheFull)
	require.Equal(t, 16, c.Len())
	seq.Tokens = []int32{int32(fx.Vocab)}
	_, err = m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.Error(t, err, "token id beyond the vocabulary")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	seq.Tokens = fx.InputIDs[16:18]
	_, err = m.Forward(ctx, &model.Batch{Seqs: []model.Seq{seq}})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 16, c.Len())
	// The cache still continues exactly.
	got := run(t, m, seq, fx.InputIDs[16:20])
	for j, lg := range got {
		require.LessOrEqual(t, fixture.RelL2(lg, fx.Row(16+j)), 1e-4)
	}
}

func TestInfo(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	for _, name := range fixtures {
		fx, m := load(t, name, b)
		info := m.Info()
		require.Equal(t, fx.Vocab, info.Vocab, name)
		require.Equal(t, gptoss.ModelType, info.ModelType)
		require.Positive(t, info.WeightBytes, name)
		require.Less(t, info.ActiveBytes, info.WeightBytes, name)
		o := m.Options()
		require.Equal(t, []bool{true, false, true, false}, o.Sliding, name)
		require.Equal(t, 8, o.Window, name)
		t.Logf("%s: %d weight bytes, %d active per token", name, info.WeightBytes, info.ActiveBytes)
	}
}
