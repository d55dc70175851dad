package deepseekv4_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/deepseekv4"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/stretchr/testify/require"
)

// backends are the CPU backend with its fast paths and the plain-Go
// reference; both must pass.
func backends() map[string]func() *cpu.Backend {
	return map[string]func() *cpu.Backend{
		"cpu":       func() *cpu.Backend { return cpu.New(cpu.Options{}) },
		"reference": func() *cpu.Backend { return cpu.New(cpu.Options{Reference: true}) },
	}
}

func load(t testing.TB, name string, b kernels.Backend) (*fixture.Model, *deepseekv4.Model) {
	t.Helper()
	fx, err := fixture.Load(name)
	require.NoError(t, err)
	cfg, err := modelconfig.Load(fx.Dir)
	require.NoError(t, err)
	m, err := deepseekv4.Load(context.Background(), fx.Dir, cfg, b, deepseekv4.LoadOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return fx, m
}

func newSeq(t testing.TB, m model.Model, dt kernels.DType) model.Seq {
	t.Helper()
	c, err := m.NewCache(256, dt)
	require.NoError(t, err)
	t.Cleanup(c.Release)
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

				// Cached decoding.
				next := argmax(out.Logits[0][(fx.T-1)*fx.Vocab:])
				var cached []int32
				for len(cached) < len(fx.Greedy) {
					cached = append(cached, next)
					seq.Tokens, seq.Logits = []int32{next}, model.LastLogits
					o, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
					require.NoError(t, err)
					next = argmax(o.Logits[0])
				}
				require.Equal(t, fx.GreedyGenerate, cached, "%s: continuation through the cache = transformers' cached generate()", name)

				// The reference continuation: no cache kept between tokens.
				ids := append([]int32(nil), fx.InputIDs...)
				var greedy []int32
				for len(greedy) < len(fx.Greedy) {
					s := newSeq(t, m, kernels.F32)
					s.Tokens, s.Logits = ids, model.LastLogits
					o, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{s}})
					require.NoError(t, err)
					s.Cache.Release()
					next := argmax(o.Logits[0])
					greedy = append(greedy, next)
					ids = append(ids, next)
				}
				require.Equal(t, fx.Greedy, greedy, "%s: greedy continuation", name)
			})
		}
	}
}

// TestLayerOutputs compares each layer's hyper-connection streams with
// transformers' (it localizes a parity failure).
func TestLayerOutputs(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			b := cpu.New(cpu.Options{})
			defer b.Close()
			fx, m := load(t, name, b)
			require.NotNil(t, fx.LayerOutputs)
			seq := newSeq(t, m, kernels.F32)
			seq.Tokens = fx.InputIDs
			hs, err := m.Hidden(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
			require.NoError(t, err)
			require.Len(t, hs, len(fx.LayerOutputs.Data)/len(hs[0]))
			per := len(hs[0])
			for l, h := range hs {
				want := fx.LayerOutputs.Data[l*per : (l+1)*per]
				require.LessOrEqual(t, fixture.RelL2(h, want), 1e-5, "layer %d output", l)
			}
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
