package kernels

import (
	"fmt"
	"math"
)

// Linear attention (Gated DeltaNet, qwen3_5_moe's three layers in four).
//
// A backend implements the three operations of LinearAttention together;
// the package-level functions below call them when it does and otherwise
// run a host fallback: the operands are read to the host, computed in
// plain Go (the token-by-token recurrence, the definition every fast form
// must reproduce) and written back. The fallback is slow — it synchronizes
// and copies — but lets any backend run the architecture, and it is the
// independent reference kerneltest checks backends against.

// Conv1D describes a causal depthwise convolution over time: output row t
// of channel c is Σ_j w[j][c]·in[t-K+1+j][c], where in is the state (the K-1
// input rows before the step, oldest first) followed by the step's rows.
type Conv1D struct {
	// SiLU applies silu to every output.
	SiLU bool
}

// GatedDelta describes the gated delta rule of one sequence's step. Per
// value head h, with key head kh = h / (VHeads/KHeads) and the state
// S ∈ R^{KDim×VDim}:
//
//	q̂ = Scale·q/√(Σq²+ε), k̂ = k/√(Σk²+ε)           (ε = 1e-6, when L2Norm)
//	g = −exp(ALog[h])·softplus(a + DtBias[h]), β = σ(b)
//	S ← exp(g)·S;  S ← S + k̂ ⊗ β(v − Sᵀk̂);  o = Sᵀq̂
//
// The chunked form (Chunk > 0) computes the same thing a chunk of tokens
// at a time (the WY / UT-transform form) and agrees with the recurrence to
// f32 rounding.
type GatedDelta struct {
	KHeads, VHeads int
	KDim, VDim     int
	// ALog and DtBias are 1×VHeads f32 tensors.
	ALog, DtBias Tensor
	// L2Norm normalizes q and k per head before use.
	L2Norm bool
	// Scale multiplies q after normalization (0: 1/√KDim).
	Scale float32
	// Chunk, when positive, selects the chunked form with chunks of that
	// many tokens; 0 selects the token-by-token recurrence.
	Chunk int
}

// GatedDeltaEps is the ε of the q/k L2 normalization (transformers' and
// FLA's l2norm).
const GatedDeltaEps = 1e-6

// QScale returns the factor q is multiplied by.
func (g GatedDelta) QScale() float32 {
	if g.Scale != 0 {
		return g.Scale
	}
	return float32(1 / math.Sqrt(float64(g.KDim)))
}

// Check validates the operand shapes of a GatedDeltaNet call.
func (g GatedDelta) Check(dst, q, k, v, a, b, state, newState Tensor) error {
	t := q.Rows
	switch {
	case g.KHeads <= 0 || g.VHeads <= 0 || g.KDim <= 0 || g.VDim <= 0 || g.VHeads%g.KHeads != 0:
		return fmt.Errorf("gated delta: %d key heads, %d value heads, dims %d/%d", g.KHeads, g.VHeads, g.KDim, g.VDim)
	case g.Chunk < 0:
		return fmt.Errorf("gated delta: chunk %d", g.Chunk)
	case q.Cols != g.KHeads*g.KDim || k.Cols != q.Cols || v.Cols != g.VHeads*g.VDim || dst.Cols != v.Cols:
		return fmt.Errorf("gated delta: q %v, k %v, v %v, dst %v for %d×%d key and %d×%d value heads", q, k, v, dst, g.KHeads, g.KDim, g.VHeads, g.VDim)
	case k.Rows != t || v.Rows != t || dst.Rows != t || a.Rows != t || b.Rows != t || a.Cols != g.VHeads || b.Cols != g.VHeads:
		return fmt.Errorf("gated delta: %d steps but k %v, v %v, a %v, b %v, dst %v", t, k, v, a, b, dst)
	case state.Rows != g.VHeads*g.KDim || state.Cols != g.VDim || newState.Rows != state.Rows || newState.Cols != state.Cols:
		return fmt.Errorf("gated delta: state %v / %v, want %d×%d", state, newState, g.VHeads*g.KDim, g.VDim)
	case g.ALog.IsZero() || g.DtBias.IsZero() || g.ALog.Rows != 1 || g.ALog.Cols != g.VHeads || g.DtBias.Rows != 1 || g.DtBias.Cols != g.VHeads:
		return fmt.Errorf("gated delta: A_log %v and dt_bias %v, want 1×%d", g.ALog, g.DtBias, g.VHeads)
	}
	return nil
}

// LinearAttention is implemented by backends with native linear-attention
// operations. Operands are f32; every tensor may be a strided view.
type LinearAttention interface {
	// CausalConv1D convolves x (T×C, one sequence's rows in time order)
	// with w (K×C; row K-1 multiplies the current row) over state ‖ x,
	// where state is (K-1)×C, writes dst (T×C) and the last K-1 rows of
	// state ‖ x into newState, which may be state itself. dst must not
	// overlap x or the states.
	CausalConv1D(dst, x, w, state, newState Tensor, c Conv1D)
	// GatedDeltaNet runs the gated delta rule over one sequence's step: q
	// and k are T×KHeads·KDim, v and dst T×VHeads·VDim, a and b T×VHeads
	// (the raw decay and β projections), state the VHeads·KDim×VDim state
	// before the step (f32); the state after the step is written to
	// newState, which may be state itself.
	GatedDeltaNet(dst, q, k, v, a, b, state, newState Tensor, g GatedDelta)
	// SigmoidMul writes σ(gate)·x; gate has x's shape or one column, which
	// is broadcast along each row.
	SigmoidMul(dst, gate, x Tensor)
}

// CausalConv1D runs the convolution on be (see LinearAttention). Only the
// host fallback returns errors; a native operation records its own.
func CausalConv1D(be Backend, dst, x, w, state, newState Tensor, c Conv1D) error {
	if la, ok := be.(LinearAttention); ok {
		la.CausalConv1D(dst, x, w, state, newState, c)
		return nil
	}
	k := w.Rows
	if w.Cols != x.Cols || dst.Rows != x.Rows || dst.Cols != x.Cols || state.Rows != k-1 || state.Cols != x.Cols ||
		newState.Rows != state.Rows || newState.Cols != state.Cols {
		return fmt.Errorf("causal conv1d: x %v, w %v, state %v / %v, dst %v", x, w, state, newState, dst)
	}
	h, err := readAll(be, x, w, state)
	if err != nil {
		return err
	}
	out, ns := HostCausalConv1D(h[0], h[1], h[2], x.Rows, x.Cols, k, c)
	if err := be.Write(dst, out); err != nil {
		return err
	}
	return be.Write(newState, ns)
}

// GatedDeltaNet runs the gated delta rule on be (see LinearAttention).
func GatedDeltaNet(be Backend, dst, q, k, v, a, b, state, newState Tensor, g GatedDelta) error {
	if la, ok := be.(LinearAttention); ok {
		la.GatedDeltaNet(dst, q, k, v, a, b, state, newState, g)
		return nil
	}
	if err := g.Check(dst, q, k, v, a, b, state, newState); err != nil {
		return err
	}
	h, err := readAll(be, q, k, v, a, b, state, g.ALog, g.DtBias)
	if err != nil {
		return err
	}
	out, s := HostGatedDelta(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], q.Rows, g)
	if err := be.Write(dst, out); err != nil {
		return err
	}
	return be.Write(newState, s)
}

// SigmoidMul writes σ(gate)·x on be (see LinearAttention).
func SigmoidMul(be Backend, dst, gate, x Tensor) error {
	if la, ok := be.(LinearAttention); ok {
		la.SigmoidMul(dst, gate, x)
		return nil
	}
	if dst.Rows != x.Rows || dst.Cols != x.Cols || gate.Rows != x.Rows || (gate.Cols != x.Cols && gate.Cols != 1) {
		return fmt.Errorf("sigmoid mul: gate %v, x %v, dst %v", gate, x, dst)
	}
	h, err := readAll(be, gate, x)
	if err != nil {
		return err
	}
	out := make([]float32, x.Elems())
	for i := 0; i < x.Rows; i++ {
		for j := 0; j < x.Cols; j++ {
			gv := h[0][i*gate.Cols]
			if gate.Cols != 1 {
				gv = h[0][i*gate.Cols+j]
			}
			out[i*x.Cols+j] = sigmoid32(gv) * h[1][i*x.Cols+j]
		}
	}
	return be.Write(dst, out)
}

func readAll(be Backend, ts ...Tensor) ([][]float32, error) {
	out := make([][]float32, len(ts))
	for i, t := range ts {
		out[i] = make([]float32, t.Elems())
		if err := be.Read(out[i], t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sigmoid32 is 1/(1+e^-x), evaluated in f64.
func sigmoid32(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

// silu32 is x·σ(x), as torch computes it (x / (1 + e^-x)).
func silu32(x float32) float32 { return float32(float64(x) / (1 + math.Exp(-float64(x)))) }

// softplus64 is log(1+e^x) with torch's linear tail above 20.
func softplus64(x float64) float64 {
	if x > 20 {
		return x
	}
	return math.Log1p(math.Exp(x))
}

// HostCausalConv1D is the plain-Go convolution over row-major host slices:
// x is t×c, w k×c, state (k-1)×c. It returns the output (t×c) and the new
// state ((k-1)×c).
func HostCausalConv1D(x, w, state []float32, t, c, k int, conv Conv1D) (out, newState []float32) {
	in := func(r, ch int) float32 { // r counts from the first state row
		if r < k-1 {
			return state[r*c+ch]
		}
		return x[(r-(k-1))*c+ch]
	}
	out = make([]float32, t*c)
	for r := 0; r < t; r++ {
		for ch := 0; ch < c; ch++ {
			var s float32
			for j := 0; j < k; j++ {
				s += w[j*c+ch] * in(r+j, ch)
			}
			if conv.SiLU {
				s = silu32(s)
			}
			out[r*c+ch] = s
		}
	}
	newState = make([]float32, (k-1)*c)
	for r := 0; r < k-1; r++ {
		for ch := 0; ch < c; ch++ {
			newState[r*c+ch] = in(t+r, ch)
		}
	}
	return out, newState
}

// GatedDeltaGates returns a value head's per-step log decay g and β from
// its raw projections.
func GatedDeltaGates(a, b, aLog, dtBias float32) (g, beta float32) {
	g = float32(-math.Exp(float64(aLog)) * softplus64(float64(a+dtBias)))
	return g, sigmoid32(b)
}

// L2Normalize scales x in place to unit L2 norm (with GatedDeltaEps) times
// scale.
func L2Normalize(x []float32, scale float32) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	r := float32(1/math.Sqrt(ss+GatedDeltaEps)) * scale
	for i := range x {
		x[i] *= r
	}
}

// HostGatedDelta is the plain-Go token-by-token gated delta rule over
// row-major host slices (shapes as LinearAttention.GatedDeltaNet). It
// returns the output (t×VHeads·VDim) and the state after the step. g.Chunk
// is ignored: this is the definition the chunked form must reproduce.
func HostGatedDelta(q, k, v, a, b, state, aLog, dtBias []float32, t int, g GatedDelta) (out, newState []float32) {
	hk, hv, dk, dv := g.KHeads, g.VHeads, g.KDim, g.VDim
	group := hv / hk
	out = make([]float32, t*hv*dv)
	s := append([]float32(nil), state...)
	qh, kh := make([]float32, dk), make([]float32, dk)
	kv := make([]float32, dv)
	for h := 0; h < hv; h++ {
		sh := s[h*dk*dv : (h+1)*dk*dv]
		src := h / group
		for i := 0; i < t; i++ {
			copy(qh, q[i*hk*dk+src*dk:i*hk*dk+(src+1)*dk])
			copy(kh, k[i*hk*dk+src*dk:i*hk*dk+(src+1)*dk])
			if g.L2Norm {
				L2Normalize(qh, g.QScale())
				L2Normalize(kh, 1)
			} else {
				for j := range qh {
					qh[j] *= g.QScale()
				}
			}
			lg, beta := GatedDeltaGates(a[i*hv+h], b[i*hv+h], aLog[h], dtBias[h])
			decay := float32(math.Exp(float64(lg)))
			for j := range sh {
				sh[j] *= decay
			}
			clear(kv)
			for r := 0; r < dk; r++ {
				for c := 0; c < dv; c++ {
					kv[c] += sh[r*dv+c] * kh[r]
				}
			}
			vr := v[i*hv*dv+h*dv : i*hv*dv+(h+1)*dv]
			for c := range kv {
				kv[c] = (vr[c] - kv[c]) * beta
			}
			for r := 0; r < dk; r++ {
				for c := 0; c < dv; c++ {
					sh[r*dv+c] += kh[r] * kv[c]
				}
			}
			o := out[i*hv*dv+h*dv : i*hv*dv+(h+1)*dv]
			for r := 0; r < dk; r++ {
				for c := 0; c < dv; c++ {
					o[c] += sh[r*dv+c] * qh[r]
				}
			}
		}
	}
	return out, s
}
