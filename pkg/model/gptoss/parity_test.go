package gptoss_test

import (
	"math"
	"slices"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/gptoss"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/stretchr/testify/require"
)

// The fixtures of this architecture: f32 and bf16 as transformers saves
// them (input-major interleaved experts), the original MXFP4 blocks, and
// MLX's mxfp4 experts with 8-bit affine attention. Each has a 48-token
// prompt and sliding window 8, so sliding layers see a window much shorter
// than the prompt.
var fixtures = []string{"gpt_oss", "gpt_oss_bf16", "gpt_oss_mxfp4", "gpt_oss_mlx"}

func load(t testing.TB, name string, b kernels.Backend) (*fixture.Model, *gptoss.Model) {
	t.Helper()
	fx, m := modeltest.Load(t, name, b, gptoss.Loader)
	return fx, m.(*gptoss.Model)
}

func newSeq(t testing.TB, m model.Model, dt kernels.DType) model.Seq {
	t.Helper()
	return modeltest.NewSeq(t, m, 256, dt)
}

// TestParity checks, for every fixture, the logits of every prompt position
// (relative L2 ≤ 1e-4) and the greedy continuation decoded with the
// rotating cache.
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
	fx, m := load(t, "gpt_oss", b)
	modeltest.LayerOutputs(t, m, fx, fx.T*m.Info().Hidden, 1e-5)
}

// TestRotatingCacheMatchesStandard: the rotating cache (sliding layers keep
// only their window) gives the very same logits as a standard cache that
// keeps every token, whatever the step sizes — chunks shorter and longer
// than the window, then decoding.
func TestRotatingCacheMatchesStandard(t *testing.T) {
	modeltest.ForEach(t, []string{"gpt_oss", "gpt_oss_mxfp4"}, func(t *testing.T, name string, b kernels.Backend) {
		fx, m := load(t, name, b)
		rs := m.CacheSpec(128, kernels.F32)
		ss := kvcache.Spec{DType: kernels.F32, Capacity: 128}
		for _, l := range rs.Layers {
			ss.Layers = append(ss.Layers, l.KV)
		}
		std, err := kvcache.NewStandard(b, ss)
		require.NoError(t, err)
		want := modeltest.Run(t, m, model.Seq{Cache: std}, fx.InputIDs)
		for _, sizes := range [][]int{{48}, {3, 5, 1, 20, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 9, 9}, {8, 8, 8, 8, 8, 8}} {
			rot, err := m.NewCache(128, kernels.F32)
			require.NoError(t, err)
			got := modeltest.Run(t, m, model.Seq{Cache: rot}, fx.InputIDs, sizes...)
			require.Equal(t, want, got, "%s: steps %v: rotating cache differs from a standard one", name, sizes)
			require.LessOrEqual(t, rot.(*kvcache.Rotating).WindowRows(), 2*7+48, "sliding layers hold the window and one step")
		}
	})
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
		got := modeltest.Run(t, m, seq, fx.InputIDs, 7, 1, 20)
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
		require.Equal(t, modeltest.Run(t, m, model.Seq{Cache: std}, fx.InputIDs, 7, 1, 20), got, "%s: rotating vs standard", c.dt)
	}
}

// TestPrefixReuseBeyondWindow: a cache that went far past a shared prefix
// longer than the window is cut back to it (from a snapshot, since the
// sliding buffers moved on) and continued with other tokens; every logit
// equals that of a fresh run over prefix + continuation.
func TestPrefixReuseBeyondWindow(t *testing.T) {
	for bname, mk := range modeltest.Backends() {
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
			_ = modeltest.Run(t, m, seq, fx.InputIDs, 16, 16, 16) // the prefix ends inside a step
			_ = modeltest.Run(t, m, seq, fx.Greedy, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
			require.Equal(t, prefix, rot.Restorable(prefix+3), "only the snapshot reaches back that far")
			require.NoError(t, c.Truncate(prefix))

			other := append([]int32(nil), fx.Greedy[:10]...)
			slices.Reverse(other)
			got := modeltest.Run(t, m, seq, other, 4, 1, 1, 1, 1, 1, 1)

			fresh, err := m.NewCache(256, kernels.F32)
			require.NoError(t, err)
			full := append(append([]int32(nil), fx.InputIDs[:prefix]...), other...)
			want := modeltest.Run(t, m, model.Seq{Cache: fresh}, full)
			require.Equal(t, want[prefix:], got, "continuation after a reused prefix longer than the window")
			for p := 0; p < prefix; p++ {
				require.LessOrEqual(t, fixture.RelL2(want[p], fx.Row(p)), 1e-4)
			}
		})
	}
}

// TestBatchInvariance runs prompts of different lengths — shorter and
// longer than the window — one at a time and then together in one ragged
// batch, one joining while the others decode past the window, and requires
// the same tokens and bit-identical logits.
func TestBatchInvariance(t *testing.T) {
	modeltest.ForEach(t, []string{"gpt_oss", "gpt_oss_mxfp4", "gpt_oss_mlx"}, func(t *testing.T, name string, b kernels.Backend) {
		fx, m := load(t, name, b)
		prompts := [][]int32{fx.InputIDs, fx.InputIDs[5:30], fx.InputIDs[11:14], fx.InputIDs[20:], fx.InputIDs[40:47]}
		// Decoding 12 tokens crosses the window of 8 for the short prompts.
		modeltest.BatchInvariance(t, m, prompts, 12, 3, 4)
	})
}

// TestFailedStepLeavesCacheUnchanged: a step refused for capacity, a bad
// token or cancellation leaves every cache as it was.
func TestFailedStepLeavesCacheUnchanged(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	fx, m := load(t, "gpt_oss", b)
	seq := modeltest.RefusedSteps(t, m, fx, 20, 16)
	// The cache still continues exactly.
	got := modeltest.Run(t, m, seq, fx.InputIDs[16:20])
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
