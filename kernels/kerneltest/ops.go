package kerneltest

import (
	"math"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/stretchr/testify/require"
)

// run applies op on both backends to the same f32 inputs (rows×cols each)
// and returns the backend's checked output and the reference output.
func (h *harness) run(t *testing.T, what string, rows, cols int, inputs [][]float32, inCols []int,
	op func(be kernels.Backend, dst kernels.Tensor, in []kernels.Tensor)) (got, want []float32) {
	t.Helper()
	mk := func(be kernels.Backend) []kernels.Tensor {
		var ts []kernels.Tensor
		for i, v := range inputs {
			c := cols
			if inCols != nil {
				c = inCols[i]
			}
			ts = append(ts, upload(t, be, kernels.F32, len(v)/c, c, v))
		}
		return ts
	}
	wantT := upload(t, h.ref, kernels.F32, rows, cols, make([]float32, rows*cols))
	op(h.ref, wantT, mk(h.ref))
	require.NoError(t, h.ref.Sync(), "reference %s", what)
	view, whole := poisoned(t, h.b, rows, cols)
	op(h.b, view, mk(h.b))
	require.NoError(t, h.b.Sync(), "%s", what)
	return readChecked(t, h.b, view, whole, what), read(t, h.ref, wantT)
}

func (h *harness) testRMSNorm(t *testing.T) {
	r := rng(5)
	const rows, cols = 9, 96
	x := randVals(r, rows*cols, 2)
	w := randVals(r, cols, 1)
	for _, tc := range []struct {
		name     string
		weighted bool
		addOne   bool
	}{{"plain", true, false}, {"one_plus_w", true, true}, {"unweighted", false, false}} {
		got, want := h.run(t, "RMSNorm "+tc.name, rows, cols, [][]float32{x, w}, []int{cols, cols},
			func(be kernels.Backend, dst kernels.Tensor, in []kernels.Tensor) {
				wt := in[1]
				if !tc.weighted {
					wt = kernels.Tensor{}
				}
				be.RMSNorm(dst, in[0], wt, 1e-6, tc.addOne)
			})
		closeTo(t, got, want, 1e-6, 1e-5, "RMSNorm %s", tc.name)
	}
	// In place.
	xb := upload(t, h.b, kernels.F32, rows, cols, x)
	h.b.RMSNorm(xb, xb, kernels.Tensor{}, 1e-6, false)
	xr := upload(t, h.ref, kernels.F32, rows, cols, x)
	h.ref.RMSNorm(xr, xr, kernels.Tensor{}, 1e-6, false)
	closeTo(t, read(t, h.b, xb), read(t, h.ref, xr), 1e-6, 1e-5, "RMSNorm in place")
}

func invFreq(dims int, theta float64) []float32 {
	f := make([]float32, dims/2)
	for i := range f {
		f[i] = float32(1 / math.Pow(theta, float64(2*i)/float64(dims)))
	}
	return f
}

func (h *harness) testRoPE(t *testing.T) {
	r := rng(6)
	const rows, heads, hd = 7, 3, 32
	x := randVals(r, rows*heads*hd, 1)
	pos := []int32{0, 1, 5, 17, 300, 4095, 40000}
	specs := map[string]kernels.RoPE{
		"half_full":            {HeadDim: hd, Dims: hd, InvFreq: invFreq(hd, 1e6)},
		"half_partial_leading": {HeadDim: hd, Dims: 8, InvFreq: invFreq(8, 1e7)},
		"interleaved_trailing": {HeadDim: hd, Dims: 16, Offset: 16, Interleaved: true, InvFreq: invFreq(16, 1e4)},
		"scaled":               {HeadDim: hd, Dims: hd, InvFreq: invFreq(hd, 150000), Scale: 1.3466},
		"inverse":              {HeadDim: hd, Dims: hd, InvFreq: invFreq(hd, 1e4), Inverse: true},
	}
	for name, spec := range specs {
		if spec.Interleaved && !h.b.Capabilities().Has(kernels.OpRoPEInterleaved) {
			continue
		}
		apply := func(be kernels.Backend) []float32 {
			xt := upload(t, be, kernels.F32, rows, heads*hd, x)
			be.RoPE(xt, pos, spec)
			require.NoError(t, be.Sync(), "RoPE %s", name)
			return read(t, be, xt)
		}
		closeTo(t, apply(h.b), apply(h.ref), 1e-5, 1e-5, "RoPE %s", name)
	}
	// Rotating forward then inverse restores the input.
	xt := upload(t, h.b, kernels.F32, rows, heads*hd, x)
	fwd := kernels.RoPE{HeadDim: hd, Dims: hd, InvFreq: invFreq(hd, 1e4)}
	h.b.RoPE(xt, pos, fwd)
	fwd.Inverse = true
	h.b.RoPE(xt, pos, fwd)
	closeTo(t, read(t, h.b, xt), x, 1e-5, 1e-5, "RoPE then inverse RoPE")
}

func (h *harness) testAttention(t *testing.T) {
	r := rng(7)
	type tc struct {
		name           string
		heads, kvHeads int
		hd             int
		qpos           []int32
		numKeys        int
		kpos           []int32
		causal         bool
		window         int
		sinks          bool
		softcap        float32
		cache          kernels.DType
		op             kernels.Op
	}
	tcs := []tc{
		{name: "prefill_gqa", heads: 8, kvHeads: 2, hd: 16, qpos: []int32{0, 1, 2, 3, 4, 5}, numKeys: 6, causal: true, cache: kernels.F32},
		{name: "decode_ragged", heads: 4, kvHeads: 4, hd: 32, qpos: []int32{40}, numKeys: 41, causal: true, cache: kernels.F32},
		{name: "chunk_after_prefix", heads: 6, kvHeads: 2, hd: 8, qpos: []int32{10, 11, 12}, numKeys: 13, causal: true, cache: kernels.F16},
		{name: "bf16_cache", heads: 4, kvHeads: 1, hd: 16, qpos: []int32{3, 4}, numKeys: 5, causal: true, cache: kernels.BF16},
		{name: "window", heads: 4, kvHeads: 2, hd: 16, qpos: []int32{0, 5, 9}, numKeys: 10, causal: true, window: 4, cache: kernels.F32, op: kernels.OpSlidingWindow},
		{name: "sinks", heads: 4, kvHeads: 2, hd: 16, qpos: []int32{2, 7}, numKeys: 8, causal: true, sinks: true, cache: kernels.F32, op: kernels.OpAttentionSinks},
		{name: "softcap", heads: 2, kvHeads: 1, hd: 16, qpos: []int32{6}, numKeys: 7, causal: true, softcap: 5, cache: kernels.F32, op: kernels.OpAttentionSoftcap},
		{name: "key_positions", heads: 4, kvHeads: 2, hd: 16, qpos: []int32{20, 21}, numKeys: 6, kpos: []int32{16, 21, 17, 18, 20, 19}, causal: true, window: 4, cache: kernels.F16, op: kernels.OpKeyPositions},
		{name: "bidirectional", heads: 2, kvHeads: 2, hd: 8, qpos: []int32{0, 1, 2}, numKeys: 3, cache: kernels.F32},
	}
	caps := h.b.Capabilities()
	for _, c := range tcs {
		if c.op != "" && !caps.Has(c.op) {
			t.Logf("%s: %s not advertised, %s skipped", h.b.Name(), c.op, c.name)
			continue
		}
		if c.cache != kernels.F32 && !containsDType(caps.CacheTypes, c.cache) {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			n := len(c.qpos)
			q := randVals(r, n*c.heads*c.hd, 1)
			// Two spare key rows beyond NumKeys must be ignored.
			kc, vc := randVals(r, (c.numKeys+2)*c.kvHeads*c.hd, 1), randVals(r, (c.numKeys+2)*c.kvHeads*c.hd, 1)
			sinks := randVals(r, c.heads, 1)
			spec := kernels.Attention{Heads: c.heads, KVHeads: c.kvHeads, HeadDim: c.hd, Scale: float32(1 / math.Sqrt(float64(c.hd))),
				QPos: c.qpos, NumKeys: c.numKeys, KPos: c.kpos, Causal: c.causal, Window: c.window, Softcap: c.softcap}
			apply := func(be kernels.Backend, dst kernels.Tensor) {
				s := spec
				if c.sinks {
					s.Sinks = upload(t, be, kernels.F32, 1, c.heads, sinks)
				}
				k := upload(t, be, c.cache, c.numKeys+2, c.kvHeads*c.hd, kc)
				v := upload(t, be, c.cache, c.numKeys+2, c.kvHeads*c.hd, vc)
				be.Attention(dst, upload(t, be, kernels.F32, n, c.heads*c.hd, q), k, v, s)
			}
			wantT := upload(t, h.ref, kernels.F32, n, c.heads*c.hd, make([]float32, n*c.heads*c.hd))
			apply(h.ref, wantT)
			require.NoError(t, h.ref.Sync())
			view, whole := poisoned(t, h.b, n, c.heads*c.hd)
			apply(h.b, view)
			require.NoError(t, h.b.Sync())
			closeTo(t, readChecked(t, h.b, view, whole, "Attention "+c.name), read(t, h.ref, wantT), 2e-6, 2e-5, "Attention %s", c.name)
		})
	}
}

func containsDType(ds []kernels.DType, d kernels.DType) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

func (h *harness) testActivate(t *testing.T) {
	r := rng(8)
	const rows, cols = 5, 64
	g, u := randVals(r, rows*cols, 4), randVals(r, rows*cols, 4)
	acts := map[string]kernels.Activation{
		"silu":         {Kind: kernels.SiLU},
		"silu_limited": {Kind: kernels.SiLULimited, Alpha: 1.702, Limit: 7, UpOffset: 1},
		"clamped_silu": {Kind: kernels.SiLULimited, Alpha: 1, Limit: 2},
		"gelu_tanh":    {Kind: kernels.GeLUTanh},
	}
	for name, a := range acts {
		if (a.Kind == kernels.SiLULimited && !h.b.Capabilities().Has(kernels.OpSiLULimited)) ||
			(a.Kind == kernels.GeLUTanh && !h.b.Capabilities().Has(kernels.OpGeLUTanh)) {
			continue
		}
		got, want := h.run(t, "Activate "+name, rows, cols, [][]float32{g, u}, nil,
			func(be kernels.Backend, dst kernels.Tensor, in []kernels.Tensor) { be.Activate(dst, in[0], in[1], a) })
		closeTo(t, got, want, 1e-6, 1e-5, "Activate %s", name)
	}
}

func (h *harness) testElementwise(t *testing.T) {
	r := rng(9)
	const rows, cols = 6, 40
	a, b := randVals(r, rows*cols, 3), randVals(r, rows*cols, 3)
	ops := map[string]func(be kernels.Backend, dst kernels.Tensor, in []kernels.Tensor){
		"add":     func(be kernels.Backend, dst kernels.Tensor, in []kernels.Tensor) { be.Add(dst, in[0], in[1]) },
		"mul":     func(be kernels.Backend, dst kernels.Tensor, in []kernels.Tensor) { be.Mul(dst, in[0], in[1]) },
		"scale":   func(be kernels.Backend, dst kernels.Tensor, in []kernels.Tensor) { be.Scale(dst, in[0], -0.37) },
		"softcap": func(be kernels.Backend, dst kernels.Tensor, in []kernels.Tensor) { be.Softcap(dst, in[0], 2.5) },
		"softmax": func(be kernels.Backend, dst kernels.Tensor, in []kernels.Tensor) { be.Softmax(dst, in[0]) },
	}
	for name, op := range ops {
		got, want := h.run(t, name, rows, cols, [][]float32{a, b}, nil, op)
		closeTo(t, got, want, 1e-7, 1e-6, "%s", name)
	}
	// A one-row b is broadcast to every row.
	bias := b[:cols]
	for name, op := range map[string]func(be kernels.Backend, dst kernels.Tensor, in []kernels.Tensor){
		"add_row": func(be kernels.Backend, dst kernels.Tensor, in []kernels.Tensor) { be.Add(dst, in[0], in[1]) },
		"mul_row": func(be kernels.Backend, dst kernels.Tensor, in []kernels.Tensor) { be.Mul(dst, in[0], in[1]) },
	} {
		got, want := h.run(t, name, rows, cols, [][]float32{a, bias}, nil, op)
		closeTo(t, got, want, 1e-7, 1e-6, "%s", name)
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				x := a[i*cols+j]
				w := x + bias[j]
				if name == "mul_row" {
					w = x * bias[j]
				}
				require.Equal(t, w, want[i*cols+j], "%s (%d,%d)", name, i, j)
			}
		}
	}
	got, _ := h.run(t, "fill", rows, cols, nil, nil,
		func(be kernels.Backend, dst kernels.Tensor, _ []kernels.Tensor) { be.Fill(dst, 0.25) })
	for _, v := range got {
		require.Equal(t, float32(0.25), v, "Fill")
	}
}

func (h *harness) testCopy(t *testing.T) {
	r := rng(10)
	const rows, cols = 4, 24
	x := randVals(r, rows*cols, 2)
	for _, dt := range h.b.Capabilities().CacheTypes {
		// f32 → dt → f32 equals the reference conversion.
		conv := func(be kernels.Backend) []float32 {
			mid, err := be.Alloc(dt, rows+1, cols)
			require.NoError(t, err)
			be.Copy(mid.RowRange(1, rows+1), upload(t, be, kernels.F32, rows, cols, x))
			back := upload(t, be, kernels.F32, rows, cols, make([]float32, rows*cols))
			be.Copy(back, mid.RowRange(1, rows+1))
			require.NoError(t, be.Sync())
			return read(t, be, back)
		}
		want := conv(h.ref)
		require.Equal(t, want, conv(h.b), "Copy through %s", dt)
		for i := range x {
			switch dt {
			case kernels.F16:
				require.Equal(t, quant.F16ToF32(quant.F32ToF16(x[i])), want[i])
			case kernels.BF16:
				require.Equal(t, quant.BF16ToF32(quant.F32ToBF16(x[i])), want[i])
			}
		}
	}
}

func (h *harness) testGatherScatter(t *testing.T) {
	r := rng(11)
	const cols = 32
	src := randVals(r, 6*cols, 1)
	idx := []int32{5, 0, 0, 3}
	got, want := h.run(t, "Gather", len(idx), cols, [][]float32{src}, nil,
		func(be kernels.Backend, dst kernels.Tensor, in []kernels.Tensor) { be.Gather(dst, in[0], idx) })
	require.Equal(t, want, got, "Gather")

	base := randVals(r, 5*cols, 1)
	rows := []int32{4, 1, 4, 0, 4}
	w := []float32{0.5, -1, 0.25, 2, 1}
	contrib := randVals(r, len(rows)*cols, 1)
	apply := func(be kernels.Backend) []float32 {
		dst := upload(t, be, kernels.F32, 5, cols, base)
		be.ScatterAdd(dst, upload(t, be, kernels.F32, len(rows), cols, contrib), rows, w)
		require.NoError(t, be.Sync())
		return read(t, be, dst)
	}
	want = apply(h.ref)
	closeTo(t, apply(h.b), want, 1e-6, 1e-6, "ScatterAdd")
	// Row 2 and 3 received nothing.
	require.Equal(t, base[2*cols:4*cols], want[2*cols:4*cols])
}

func (h *harness) testRoute(t *testing.T) {
	r := rng(12)
	const rows, experts = 7, 16
	logits := randVals(r, rows*experts, 2)
	bias := randVals(r, experts, 0.5)
	specs := map[string]kernels.Routing{
		"softmax_all_norm": {K: 4, Score: kernels.SoftmaxAll, Normalize: true},
		"softmax_all":      {K: 2, Score: kernels.SoftmaxAll},
		"softmax_topk":     {K: 4, Score: kernels.SoftmaxTopK},
		"sigmoid_bias":     {K: 3, Score: kernels.Sigmoid, Normalize: true, Scale: 2.5},
		"sqrt_softplus":    {K: 6, Score: kernels.SqrtSoftplus, Normalize: true, Scale: 1.5},
	}
	for name, spec := range specs {
		if (spec.Score == kernels.Sigmoid || spec.Score == kernels.SqrtSoftplus) && !h.b.Capabilities().Has(kernels.OpRouteSigmoid) {
			continue
		}
		route := func(be kernels.Backend) ([]int32, []float32) {
			s := spec
			if s.Score == kernels.Sigmoid {
				s.Bias = upload(t, be, kernels.F32, 1, experts, bias)
			}
			idx := make([]int32, rows*s.K)
			w := make([]float32, rows*s.K)
			require.NoError(t, be.Route(upload(t, be, kernels.F32, rows, experts, logits), s, idx, w), "Route %s", name)
			return idx, w
		}
		wi, ww := route(h.ref)
		gi, gw := route(h.b)
		require.Equal(t, wi, gi, "Route %s: expert ids", name)
		closeTo(t, gw, ww, 1e-7, 1e-6, "Route %s: weights", name)
	}
}

func (h *harness) testErrors(t *testing.T) {
	x := upload(t, h.b, kernels.F32, 2, 8, make([]float32, 16))
	y := upload(t, h.b, kernels.F32, 2, 9, make([]float32, 18))
	h.b.Add(y, x, x)
	require.Error(t, h.b.Sync(), "Add of mismatched shapes must be reported by Sync")
	require.NoError(t, h.b.Sync(), "Sync clears the error it reported")
	m := quant.FromPlain(quant.F32, make([]float32, 16), 2, 8)
	w, err := h.b.Bind(m)
	require.NoError(t, err)
	h.b.Embed(x, w, []int32{0, 2})
	require.Error(t, h.b.Sync(), "an out-of-range token id must be reported")
	bad := &quant.Matrix{Format: quant.Format{Kind: quant.Affine, Bits: 4, GroupSize: 64, Scale: quant.ScaleBF16}, Rows: 1, Cols: 64, Data: []byte{1}}
	_, err = h.b.Bind(bad)
	require.Error(t, err, "Bind must validate the matrix")
}
