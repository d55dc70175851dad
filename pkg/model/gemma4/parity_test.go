package gemma4_test

import (
	"slices"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/gemma4"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/stretchr/testify/require"
)

// The fixtures of this architecture (testdata/models/README.md):
// gemma4 (f32, wrapped, k=v full layer with one global KV head of dim 32,
// proportional RoPE, window 8), gemma4_mlx4 (MLX affine 4-bit, router
// 8-bit, experts.switch_glu) and gemma4_ple (per-layer inputs, the last
// two layers sharing earlier layers' keys and values). Their 48-token
// prompts are six sliding windows long.
var fixtures = []string{"gemma4", "gemma4_mlx4", "gemma4_ple"}

func load(t testing.TB, name string, b kernels.Backend) (*fixture.Model, *gemma4.Model) {
	t.Helper()
	fx, m := modeltest.Load(t, name, b, gemma4.Loader)
	return fx, m.(*gemma4.Model)
}

// TestParity checks, for every fixture and backend, the logits of every
// prompt position (relative L2 ≤ 1e-4 of transformers') and the greedy
// continuation decoded token by token with the rotating cache.
func TestParity(t *testing.T) {
	modeltest.ForEach(t, fixtures, func(t *testing.T, name string, b kernels.Backend) {
		fx, m := load(t, name, b)
		require.Equal(t, fx.Greedy, modeltest.Parity(t, m, fx, 1e-4), "%s: greedy continuation", name)
	})
}

// TestLayerOutputs compares each decoder layer's output with
// transformers', which localizes a parity failure.
func TestLayerOutputs(t *testing.T) {
	for _, name := range []string{"gemma4", "gemma4_ple"} {
		t.Run(name, func(t *testing.T) {
			b := cpu.New(cpu.Options{})
			defer b.Close()
			fx, m := load(t, name, b)
			hs := modeltest.LayerOutputs(t, m, fx, fx.T*m.Info().Hidden, 1e-5)
			require.Len(t, hs, int(fx.LayerOutputs.Shape[0]))
		})
	}
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
			modeltest.BatchInvariance(t, m, prompts, 10, 3, 2)
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
				whole := modeltest.NewSeq(t, m, 256, dt)
				whole.Tokens, whole.Logits = fx.InputIDs, model.AllLogits
				out, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{whole}})
				require.NoError(t, err)
				want := slices.Clone(out.Logits[0])

				seq := modeltest.NewSeq(t, m, 256, dt)
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
	seq := modeltest.RefusedSteps(t, m, fx, 10, 8)
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

	seq := modeltest.NewSeq(t, m, 8, kernels.F32)
	seq.Tokens, seq.Logits = fx.InputIDs[:8], model.AllLogits
	out, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.NoError(t, err)
	for p := 0; p < 8; p++ {
		require.LessOrEqual(t, fixture.RelL2(out.Logits[0][p*fx.Vocab:(p+1)*fx.Vocab], fx.Row(p)), 1e-4)
	}
}
