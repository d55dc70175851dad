package deepseekv4_test

import (
	"strings"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/deepseekv4"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/stretchr/testify/require"
)

func load(t testing.TB, name string, b kernels.Backend) (*fixture.Model, *deepseekv4.Model) {
	t.Helper()
	fx, m := modeltest.Load(t, name, b, deepseekv4.Loader)
	return fx, m.(*deepseekv4.Model)
}

func newSeq(t testing.TB, m model.Model, dt kernels.DType) model.Seq {
	t.Helper()
	return modeltest.NewSeq(t, m, 256, dt)
}

// fixtures: transformers' save_pretrained form (f32) and DeepSeek's
// upstream FP8/FP4 form of the same weights with YaRN on the compressed
// layers (tools/refgen/deepseek_fp.py). Both have a 48-token prompt,
// longer than the window (8) and every compression ratio (4 and 8).
var fixtures = []string{"deepseek_v4", "deepseek_v4_fp8"}

// TestParity checks, for every fixture and both CPU paths, the logits of
// every prompt position (relative L2 ≤ 1e-4), the greedy continuation
// computed as the reference computes it (the whole sequence re-run for
// every new token), and the continuation decoded token by token through
// the compressed cache, which must equal transformers' own cached
// generate(): the two continuations differ only where the lightning
// indexer's scores tie exactly, see testdata/models/README.md.
func TestParity(t *testing.T) {
	modeltest.ForEach(t, fixtures, func(t *testing.T, name string, b kernels.Backend) {
		fx, m := load(t, name, b)
		cached := modeltest.Parity(t, m, fx, 1e-4)
		require.Equal(t, fx.GreedyGenerate, cached, "%s: continuation through the cache = transformers' cached generate()", name)

		// The reference continuation: no cache kept between tokens.
		ids := append([]int32(nil), fx.InputIDs...)
		var greedy []int32
		for len(greedy) < len(fx.Greedy) {
			s := newSeq(t, m, kernels.F32)
			s.Tokens, s.Logits = ids, model.LastLogits
			o := modeltest.Forward(t, m, s)
			s.Cache.Release()
			next := modeltest.Argmax(o.Logits[0])
			greedy = append(greedy, next)
			ids = append(ids, next)
		}
		require.Equal(t, fx.Greedy, greedy, "%s: greedy continuation", name)
	})
}

// TestLayerOutputs compares each layer's hyper-connection streams with
// transformers' (it localizes a parity failure).
func TestLayerOutputs(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			b := cpu.New(cpu.Options{})
			defer b.Close()
			fx, m := load(t, name, b)
			modeltest.LayerOutputs(t, m, fx, 0, 1e-5) // per layer: hc_mult streams of every row
		})
	}
}

// TestDequantization: the FP8 and FP4 tensors of the upstream-form fixture
// decode to exactly the float32 values transformers computed the
// reference with (FP8 code × tile scale, FP4 code × group scale).
func TestDequantization(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	fx, m := load(t, "deepseek_v4_fp8", b)
	require.NotEmpty(t, fx.Dequant)
	for name, want := range fx.Dequant {
		require.Len(t, want.Shape, 2, name)
		got, err := m.Dequantize(strings.TrimSuffix(name, ".weight"), int(want.Shape[0]), int(want.Shape[1]))
		require.NoError(t, err, name)
		require.Equal(t, want.Data, got, name)
	}
}
