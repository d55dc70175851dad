package moe_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/moe"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/stretchr/testify/require"
)

func TestPlan(t *testing.T) {
	// Three tokens, top-2 of 4 experts.
	idx := []int32{2, 0, 0, 3, 2, 1}
	w := []float32{0.6, 0.4, 0.7, 0.3, 0.9, 0.1}
	var d moe.Dispatch
	require.NoError(t, moe.Plan(idx, w, 2, 4, &d))
	require.Equal(t, []int{0, 1, 2, 3}, d.Experts)
	require.Equal(t, []int{0, 2, 3, 5, 6}, d.Offs)
	require.Equal(t, []int32{0, 1, 2, 0, 2, 1}, d.Rows)
	require.Equal(t, []float32{0.4, 0.7, 0.1, 0.6, 0.9, 0.3}, d.Weights)
	require.Error(t, moe.Plan([]int32{4}, []float32{1}, 1, 4, &d))
}

// noGrouped hides the backend's fused grouped matmul, so the composed
// fallback (gather, then one matmul per expert) runs.
type noGrouped struct{ kernels.Backend }

type setup struct {
	b       kernels.Backend
	block   *moe.Block
	x       kernels.Tensor
	xs      []float32
	experts []*moe.Expert
	mats    [][3]*quant.Matrix // gate, up, down per expert
	router  []float32
}

func newSetup(t *testing.T, b kernels.Backend) *setup {
	t.Helper()
	const hidden, inter, nexp, tokens = 64, 32, 6, 11
	r := rand.New(rand.NewPCG(9, 9))
	randv := func(n int, s float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * s)
		}
		return v
	}
	s := &setup{b: b}
	for e := 0; e < nexp; e++ {
		var ms [3]*quant.Matrix
		var ws [3]kernels.Weight
		for i, shape := range [][2]int{{inter, hidden}, {inter, hidden}, {hidden, inter}} {
			m, err := quant.QuantizeAffine(randv(shape[0]*shape[1], 0.2), shape[0], shape[1], 4, 32, quant.ScaleBF16)
			require.NoError(t, err)
			ws[i], err = b.Bind(m)
			require.NoError(t, err)
			ms[i] = m
		}
		s.mats = append(s.mats, ms)
		s.experts = append(s.experts, &moe.Expert{Gate: ws[0], Up: ws[1], Down: ws[2]})
	}
	s.router = randv(nexp*hidden, 1)
	rw, err := b.Bind(quant.FromPlain(quant.F32, s.router, nexp, hidden))
	require.NoError(t, err)
	s.block = &moe.Block{Router: &model.Linear{W: rw}, Store: moe.NewResident(map[int][]*moe.Expert{0: s.experts}),
		Routing: kernels.Routing{K: 2, Score: kernels.SoftmaxAll, Normalize: true}, Act: kernels.Activation{Kind: kernels.SiLU}}
	s.xs = randv(tokens*hidden, 1)
	s.x, err = b.Alloc(kernels.F32, tokens, hidden)
	require.NoError(t, err)
	require.NoError(t, b.Write(s.x, s.xs))
	return s
}

func (s *setup) forward(t *testing.T, b kernels.Backend, maxSlots int) []float32 {
	t.Helper()
	out, err := s.b.Alloc(kernels.F32, s.x.Rows, s.x.Cols)
	require.NoError(t, err)
	blk := *s.block
	blk.MaxSlots = maxSlots
	require.NoError(t, blk.Forward(context.Background(), b, model.NewWorkspace(b), s.x, out))
	got := make([]float32, out.Elems())
	require.NoError(t, s.b.Read(got, out))
	return got
}

// naive computes the block token by token on the host.
func (s *setup) naive() []float32 {
	hidden := s.x.Cols
	nexp := len(s.experts)
	out := make([]float32, len(s.xs))
	deq := make([][3][]float32, nexp)
	for e, ms := range s.mats {
		for i, m := range ms {
			deq[e][i] = m.Dequantize()
		}
	}
	for tk := 0; tk < s.x.Rows; tk++ {
		x := s.xs[tk*hidden : (tk+1)*hidden]
		logits := make([]float64, nexp)
		mx := math.Inf(-1)
		for e := range logits {
			for j, v := range x {
				logits[e] += float64(s.router[e*hidden+j]) * float64(v)
			}
			mx = math.Max(mx, logits[e])
		}
		var sum float64
		for e := range logits {
			logits[e] = math.Exp(logits[e] - mx)
			sum += logits[e]
		}
		best := []int{-1, -1}
		for e := range logits {
			if best[0] < 0 || logits[e] > logits[best[0]] {
				best[1], best[0] = best[0], e
			} else if best[1] < 0 || logits[e] > logits[best[1]] {
				best[1] = e
			}
		}
		wsum := logits[best[0]] + logits[best[1]]
		for _, e := range best {
			wt := logits[e] / wsum
			inter := s.mats[e][0].Rows
			h := make([]float64, inter)
			for i := 0; i < inter; i++ {
				var g, u float64
				for j, v := range x {
					g += float64(deq[e][0][i*hidden+j]) * float64(v)
					u += float64(deq[e][1][i*hidden+j]) * float64(v)
				}
				h[i] = g / (1 + math.Exp(-g)) * u
			}
			for j := 0; j < hidden; j++ {
				var y float64
				for i := 0; i < inter; i++ {
					y += float64(deq[e][2][j*inter+i]) * h[i]
				}
				out[tk*hidden+j] += float32(wt * y)
			}
		}
	}
	return out
}

func TestBlock(t *testing.T) {
	for _, opts := range []cpu.Options{{}, {Reference: true}} {
		b := cpu.New(opts)
		s := newSetup(t, b)
		want := s.naive()
		got := s.forward(t, b, 0)
		for i := range want {
			require.InDelta(t, want[i], got[i], 1e-4*(1+math.Abs(float64(want[i]))), "element %d on %s", i, b.Name())
		}
		// Small passes and the composed fallback give the same bits.
		require.Equal(t, got, s.forward(t, b, 3), "MaxSlots 3")
		require.Equal(t, got, s.forward(t, b, 1), "MaxSlots 1")
		require.Equal(t, got, s.forward(t, noGrouped{b}, 0), "without the fused grouped matmul")
		require.NoError(t, b.Close())
	}
}

func TestResident(t *testing.T) {
	e0, e1 := &moe.Expert{}, &moe.Expert{}
	r := moe.NewResident(map[int][]*moe.Expert{2: {e0, e1}})
	require.Equal(t, 2, r.Experts(2))
	require.Zero(t, r.Experts(0))
	got, err := r.Acquire(context.Background(), 2, []int{1, 0})
	require.NoError(t, err)
	require.Equal(t, []*moe.Expert{e1, e0}, got)
	_, err = r.Acquire(context.Background(), 2, []int{2})
	require.Error(t, err)
}

// UseStore hands every MoE block the given store, or a resident one over
// the bound experts, and refuses a store whose expert count for a layer
// differs from the config's.
func TestUseStore(t *testing.T) {
	resident := map[int][]*moe.Expert{0: {{}, {}}, 2: {{}, {}, {}}}
	want := func(i int) int { return []int{2, 0, 3}[i] }
	blocks := []*moe.Block{{Layer: 0}, nil, {Layer: 2}} // layer 1 is dense
	s, err := moe.UseStore("ckpt", nil, resident, blocks, want)
	require.NoError(t, err)
	require.IsType(t, &moe.Resident{}, s)
	require.Same(t, s, blocks[0].Store)
	require.Same(t, s, blocks[2].Store)

	given := moe.NewResident(resident)
	s, err = moe.UseStore("ckpt", given, nil, blocks, want)
	require.NoError(t, err)
	require.Same(t, given, s)
	require.Same(t, given, blocks[2].Store)

	s, err = moe.UseStore("ckpt", nil, resident, blocks, func(int) int { return 2 })
	require.EqualError(t, err, "ckpt: layer 2 has 3 experts in the store, config.json says 2")
	require.NotNil(t, s, "the store comes back for the caller to close")
}
