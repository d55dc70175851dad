package kerneltest

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/stretchr/testify/require"
)

// Linear attention: a backend's native operations (kernels.LinearAttention)
// or the package's host fallback, checked against the plain-Go definitions
// in package kernels (HostCausalConv1D, HostGatedDelta).

// hostOnly hides a backend's optional interfaces, so the package-level
// functions take their host fallback.
type hostOnly struct{ kernels.Backend }

func (h *harness) testLinearAttention(t *testing.T) {
	backends := map[string]kernels.Backend{"fallback": hostOnly{h.b}}
	if _, ok := h.b.(kernels.LinearAttention); ok {
		backends["native"] = h.b
	} else {
		t.Logf("%s has no native linear attention; checking the host fallback on it", h.b.Name())
	}
	for name, be := range backends {
		t.Run(name, func(t *testing.T) {
			t.Run("CausalConv1D", func(t *testing.T) { testConv(t, be) })
			t.Run("GatedDeltaNet", func(t *testing.T) { testDelta(t, be) })
			t.Run("SigmoidMul", func(t *testing.T) { testSigmoidMul(t, be) })
		})
	}
}

// relL2 is ‖got−want‖/‖want‖.
func relL2(got, want []float32) float64 {
	var d, n float64
	for i := range want {
		e := float64(got[i]) - float64(want[i])
		d += e * e
		n += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(d / n)
}

func testConv(t *testing.T, be kernels.Backend) {
	r := rng(21)
	for _, tc := range []struct {
		name    string
		k, t, c int
		silu    bool
	}{
		{"k4_prefill", 4, 9, 40, true},
		{"k4_decode", 4, 1, 300, true},
		{"k2_plain", 2, 5, 17, false},
		{"k4_short_step", 4, 2, 24, true}, // fewer rows than the state
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := randVals(r, tc.t*tc.c, 1)
			w := randVals(r, tc.k*tc.c, 0.5)
			st := randVals(r, (tc.k-1)*tc.c, 1)
			conv := kernels.Conv1D{SiLU: tc.silu}
			wantOut, wantState := kernels.HostCausalConv1D(x, w, st, tc.t, tc.c, tc.k, conv)

			// Separate new state, output in a poisoned strided view.
			xt := upload(t, be, kernels.F32, tc.t, tc.c, x)
			wt := upload(t, be, kernels.F32, tc.k, tc.c, w)
			s0 := upload(t, be, kernels.F32, tc.k-1, tc.c, st)
			s1 := upload(t, be, kernels.F32, tc.k-1, tc.c, make([]float32, len(st)))
			view, whole := poisoned(t, be, tc.t, tc.c)
			require.NoError(t, kernels.CausalConv1D(be, view, xt, wt, s0, s1, conv))
			require.NoError(t, be.Sync())
			closeTo(t, readChecked(t, be, view, whole, "CausalConv1D"), wantOut, 1e-6, 1e-5, "CausalConv1D %s output", tc.name)
			require.Equal(t, wantState, read(t, be, s1), "CausalConv1D %s new state", tc.name)
			require.Equal(t, st, read(t, be, s0), "CausalConv1D %s must not change the old state", tc.name)

			// In place, split into two steps: the same output and state.
			s := upload(t, be, kernels.F32, tc.k-1, tc.c, st)
			out := upload(t, be, kernels.F32, tc.t, tc.c, make([]float32, tc.t*tc.c))
			cut := tc.t / 2
			if cut > 0 {
				require.NoError(t, kernels.CausalConv1D(be, out.RowRange(0, cut), xt.RowRange(0, cut), wt, s, s, conv))
			}
			require.NoError(t, kernels.CausalConv1D(be, out.RowRange(cut, tc.t), xt.RowRange(cut, tc.t), wt, s, s, conv))
			require.NoError(t, be.Sync())
			closeTo(t, read(t, be, out), wantOut, 1e-6, 1e-5, "CausalConv1D %s in two steps", tc.name)
			require.Equal(t, wantState, read(t, be, s), "CausalConv1D %s state after two steps", tc.name)
		})
	}
}

type deltaCase struct {
	name           string
	hk, hv, dk, dv int
	t              int
	l2             bool
}

func deltaInputs(r *rand.Rand, c deltaCase) (q, k, v, a, b, s, aLog, dtBias []float32) {
	rv := func(n int, scale, shift float64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(r.NormFloat64()*scale + shift)
		}
		return out
	}
	q = rv(c.t*c.hk*c.dk, 1, 0)
	k = rv(c.t*c.hk*c.dk, 1, 0)
	v = rv(c.t*c.hv*c.dv, 1, 0)
	a = rv(c.t*c.hv, 1, 0)
	b = rv(c.t*c.hv, 1.5, 0)
	s = rv(c.hv*c.dk*c.dv, 0.3, 0)
	aLog = rv(c.hv, 0.5, -1) // decays from about 0.4 to 0.99 per step
	dtBias = rv(c.hv, 0.5, 0)
	if !c.l2 {
		// Unnormalized keys must keep |β·k·k| small for the recurrence to
		// stay bounded.
		for i := range k {
			k[i] /= float32(math.Sqrt(float64(c.dk)))
		}
	}
	return
}

func testDelta(t *testing.T, be kernels.Backend) {
	r := rng(22)
	for _, c := range []deltaCase{
		{"gqa_simd_dims", 2, 4, 16, 8, 37, true},
		{"equal_heads_odd_dims", 3, 3, 12, 5, 20, true},
		{"decode", 2, 4, 16, 16, 1, true},
		{"no_l2norm", 1, 2, 8, 8, 11, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			q, k, v, a, b, s, aLog, dtBias := deltaInputs(r, c)
			base := kernels.GatedDelta{KHeads: c.hk, VHeads: c.hv, KDim: c.dk, VDim: c.dv, L2Norm: c.l2}
			wantOut, wantState := kernels.HostGatedDelta(q, k, v, a, b, s, aLog, dtBias, c.t, base)
			for _, chunk := range []int{0, 1, 4, 64} {
				g := base
				g.Chunk = chunk
				g.ALog = upload(t, be, kernels.F32, 1, c.hv, aLog)
				g.DtBias = upload(t, be, kernels.F32, 1, c.hv, dtBias)
				in := func(vals []float32, cols int) kernels.Tensor {
					return upload(t, be, kernels.F32, len(vals)/cols, cols, vals)
				}
				qt, kt, vt := in(q, c.hk*c.dk), in(k, c.hk*c.dk), in(v, c.hv*c.dv)
				at, bt := in(a, c.hv), in(b, c.hv)
				s0 := in(s, c.dv)
				s1 := in(make([]float32, len(s)), c.dv)
				view, whole := poisoned(t, be, c.t, c.hv*c.dv)
				require.NoError(t, kernels.GatedDeltaNet(be, view, qt, kt, vt, at, bt, s0, s1, g))
				require.NoError(t, be.Sync())
				got := readChecked(t, be, view, whole, "GatedDeltaNet")
				gotState := read(t, be, s1)
				require.Equal(t, s, read(t, be, s0), "chunk %d: the old state must not change", chunk)
				require.LessOrEqual(t, relL2(got, wantOut), 1e-5, "chunk %d: output vs the recurrence", chunk)
				require.LessOrEqual(t, relL2(gotState, wantState), 1e-5, "chunk %d: state vs the recurrence", chunk)
				closeTo(t, got, wantOut, 1e-5, 1e-4, "GatedDeltaNet %s chunk %d", c.name, chunk)

				// In place and in two steps: the same result.
				st := in(s, c.dv)
				out := in(make([]float32, c.t*c.hv*c.dv), c.hv*c.dv)
				cut := c.t / 3
				for _, seg := range [][2]int{{0, cut}, {cut, c.t}} {
					if seg[0] == seg[1] {
						continue
					}
					rows := func(x kernels.Tensor) kernels.Tensor { return x.RowRange(seg[0], seg[1]) }
					require.NoError(t, kernels.GatedDeltaNet(be, rows(out), rows(qt), rows(kt), rows(vt), rows(at), rows(bt), st, st, g))
				}
				require.NoError(t, be.Sync())
				require.LessOrEqual(t, relL2(read(t, be, out), wantOut), 1e-5, "chunk %d in two steps: output", chunk)
				require.LessOrEqual(t, relL2(read(t, be, st), wantState), 1e-5, "chunk %d in two steps: state", chunk)
			}
		})
	}
	// Bad shapes are reported, not acted on.
	g := kernels.GatedDelta{KHeads: 2, VHeads: 3, KDim: 4, VDim: 4}
	x := upload(t, be, kernels.F32, 2, 8, make([]float32, 16))
	err := kernels.GatedDeltaNet(be, x, x, x, x, x, x, x, x, g)
	if err == nil {
		err = be.Sync()
	}
	require.Error(t, err, "value heads not a multiple of key heads")
}

func testSigmoidMul(t *testing.T, be kernels.Backend) {
	r := rng(23)
	const rows, cols = 5, 33
	x := randVals(r, rows*cols, 2)
	gate := randVals(r, rows*cols, 3)
	sig := func(v float32) float32 { return float32(1 / (1 + math.Exp(-float64(v)))) }
	for _, gc := range []int{cols, 1} {
		xt := upload(t, be, kernels.F32, rows, cols, x)
		gt := upload(t, be, kernels.F32, rows, gc, gate[:rows*gc])
		view, whole := poisoned(t, be, rows, cols)
		require.NoError(t, kernels.SigmoidMul(be, view, gt, xt))
		require.NoError(t, be.Sync())
		got := readChecked(t, be, view, whole, "SigmoidMul")
		want := make([]float32, rows*cols)
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				g := gate[i*gc]
				if gc == cols {
					g = gate[i*cols+j]
				}
				want[i*cols+j] = sig(g) * x[i*cols+j]
			}
		}
		closeTo(t, got, want, 1e-7, 1e-6, "SigmoidMul with a gate of %d columns", gc)
	}
}
