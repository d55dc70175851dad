package moe_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/moe"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/stretchr/testify/require"
)

// TestExpertLayouts: the same experts with biases, stored as separate gate
// and up, as a fused gate_up (gate rows first) and as gpt-oss's interleaved
// gate_up, give the very same block output, natively and through the
// composed fallbacks.
func TestExpertLayouts(t *testing.T) {
	const hidden, inter, nexp, tokens = 32, 16, 4, 9
	r := rand.New(rand.NewPCG(4, 2))
	randv := func(n int, s float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * s)
		}
		return v
	}
	type raw struct{ gate, up, down, gb, ub, db []float32 }
	var es []raw
	for range nexp {
		es = append(es, raw{randv(inter*hidden, 1), randv(inter*hidden, 1), randv(hidden*inter, 0.3),
			randv(inter, 1), randv(inter, 1), randv(hidden, 1)})
	}
	router := randv(nexp*hidden, 1)
	xs := randv(tokens*hidden, 2)
	for _, opts := range []cpu.Options{{}, {Reference: true}} {
		b := cpu.New(opts)
		bind := func(v []float32, rows, cols int) kernels.Weight {
			w, err := b.Bind(quant.FromPlain(quant.F32, v, rows, cols))
			require.NoError(t, err)
			return w
		}
		vec := func(v []float32) kernels.Tensor {
			x, err := b.Alloc(kernels.F32, 1, len(v))
			require.NoError(t, err)
			require.NoError(t, b.Write(x, v))
			return x
		}
		layouts := map[string][]*moe.Expert{}
		for _, e := range es {
			down, db := bind(e.down, hidden, inter), vec(e.db)
			layouts["split"] = append(layouts["split"], &moe.Expert{Gate: bind(e.gate, inter, hidden), Up: bind(e.up, inter, hidden),
				GateBias: vec(e.gb), UpBias: vec(e.ub), Down: down, DownBias: db})
			fused := append(append([]float32(nil), e.gate...), e.up...)
			layouts["fused"] = append(layouts["fused"], &moe.Expert{GateUp: bind(fused, 2*inter, hidden),
				GateUpBias: vec(append(append([]float32(nil), e.gb...), e.ub...)), Down: down, DownBias: db})
			var il, ilb []float32
			for i := 0; i < inter; i++ {
				il = append(append(il, e.gate[i*hidden:(i+1)*hidden]...), e.up[i*hidden:(i+1)*hidden]...)
				ilb = append(ilb, e.gb[i], e.ub[i])
			}
			layouts["interleaved"] = append(layouts["interleaved"], &moe.Expert{GateUp: bind(il, 2*inter, hidden), Interleaved: true,
				GateUpBias: vec(ilb), Down: down, DownBias: db})
		}
		x, err := b.Alloc(kernels.F32, tokens, hidden)
		require.NoError(t, err)
		require.NoError(t, b.Write(x, xs))
		forward := func(be kernels.Backend, experts []*moe.Expert) []float32 {
			blk := &moe.Block{Router: &model.Linear{W: bind(router, nexp, hidden)}, Store: moe.NewResident(map[int][]*moe.Expert{0: experts}),
				Routing: kernels.Routing{K: 2, Score: kernels.SoftmaxTopK},
				Act:     kernels.Activation{Kind: kernels.SiLULimited, Alpha: 1.702, Limit: 7, UpOffset: 1}}
			out, err := b.Alloc(kernels.F32, tokens, hidden)
			require.NoError(t, err)
			require.NoError(t, blk.Forward(context.Background(), be, model.NewWorkspace(be), x, out))
			got := make([]float32, out.Elems())
			require.NoError(t, b.Read(got, out))
			return got
		}
		want := forward(b, layouts["split"])
		for name, experts := range layouts {
			require.Equal(t, want, forward(b, experts), "%s on %s", name, b.Name())
			require.Equal(t, want, forward(hiddenOps{b}, experts), "%s on %s without native interleaved activation or grouped matmul", name, b.Name())
		}
		require.NoError(t, b.Close())
	}
}

// hiddenOps hides every optional interface of the backend.
type hiddenOps struct{ kernels.Backend }
