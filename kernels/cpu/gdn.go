package cpu

import (
	"math"
	"sync"

	"github.com/maniac-ai/mach/kernels"
)

// Linear attention (kernels.LinearAttention): the causal depthwise
// convolution, the gated delta rule in its recurrent and chunked forms, and
// the sigmoid gate. Work is split over channel blocks (convolution) and
// value heads (delta rule); every head's result depends only on that head's
// inputs, so batching sequences never changes it.

var _ kernels.LinearAttention = (*Backend)(nil)

// convBlock is the number of channels one worker convolves at a time.
const convBlock = 256

// CausalConv1D implements kernels.LinearAttention.
func (b *Backend) CausalConv1D(dst, x, w, state, newState kernels.Tensor, c kernels.Conv1D) {
	d, err1 := f32Of(dst)
	xs, err2 := f32Of(x)
	ws, err3 := f32Of(w)
	ss, err4 := f32Of(state)
	ns, err5 := f32Of(newState)
	if err := firstErr(err1, err2, err3, err4, err5, sameShape(dst, x), sameShape(state, newState)); err != nil {
		b.fail("causal_conv1d", err)
		return
	}
	k, t, ch := w.Rows, x.Rows, x.Cols
	if k < 1 || w.Cols != ch || state.Rows != k-1 || state.Cols != ch {
		b.failf("causal_conv1d", "weight %v and state %v for %v", w, state, x)
		return
	}
	// in(r) is row r of state ‖ x.
	in := func(r int) []float32 {
		if r < k-1 {
			return row(ss, state, r)
		}
		return row(xs, x, r-(k-1))
	}
	blocks := (ch + convBlock - 1) / convBlock
	run := b.pool.run
	if t*ch*k < inlineMACs {
		run = func(n int, fn func(worker, i int)) {
			for i := 0; i < n; i++ {
				fn(0, i)
			}
		}
	}
	run(blocks, func(_, blk int) {
		c0, c1 := blk*convBlock, min((blk+1)*convBlock, ch)
		for r := 0; r < t; r++ {
			out := row(d, dst, r)[c0:c1]
			clear(out)
			for j := 0; j < k; j++ {
				wr, ir := row(ws, w, j)[c0:c1], in(r + j)[c0:c1]
				for i := range out {
					out[i] += wr[i] * ir[i]
				}
			}
			if c.SiLU {
				for i, v := range out {
					out[i] = silu(v)
				}
			}
		}
		// The new state is rows t … t+k-2 of state ‖ x. Rows still taken
		// from the old state move towards the front, so copying in
		// ascending order is safe when newState is state.
		for r := 0; r < k-1; r++ {
			copy(row(ns, newState, r)[c0:c1], in(t + r)[c0:c1])
		}
	})
}

// SigmoidMul implements kernels.LinearAttention.
func (b *Backend) SigmoidMul(dst, gate, x kernels.Tensor) {
	d, err1 := f32Of(dst)
	g, err2 := f32Of(gate)
	xs, err3 := f32Of(x)
	if err := firstErr(err1, err2, err3, sameShape(dst, x)); err != nil {
		b.fail("sigmoid_mul", err)
		return
	}
	if gate.Rows != x.Rows || (gate.Cols != x.Cols && gate.Cols != 1) {
		b.failf("sigmoid_mul", "gate %v for %v", gate, x)
		return
	}
	b.forRows(x.Rows, x.Cols, func(_, i int) {
		dr, gr, xr := row(d, dst, i), row(g, gate, i), row(xs, x, i)
		if len(gr) == 1 && len(xr) != 1 {
			s := sigmoid(gr[0])
			for j, v := range xr {
				dr[j] = s * v
			}
			return
		}
		for j, v := range xr {
			dr[j] = sigmoid(gr[j]) * v
		}
	})
}

// deltaJob is one GatedDeltaNet call's operands as host slices.
type deltaJob struct {
	g                      kernels.GatedDelta
	q, k, v, a, b, dst     []float32
	qt, kt, vt, at, bt, dt kernels.Tensor
	s, ns                  []float32
	aLog, dtBias           []float32
	t                      int
	simd                   bool
	scale                  float32
	inPlace                bool
	chunk                  int
	group                  int
	dk, dv                 int
}

// GatedDeltaNet implements kernels.LinearAttention.
func (b *Backend) GatedDeltaNet(dst, q, k, v, a, bt, state, newState kernels.Tensor, g kernels.GatedDelta) {
	if err := g.Check(dst, q, k, v, a, bt, state, newState); err != nil {
		b.fail("gated_delta_net", err)
		return
	}
	var errs [10]error
	j := &deltaJob{g: g, qt: q, kt: k, vt: v, at: a, bt: bt, dt: dst, t: q.Rows}
	j.q, errs[0] = f32Of(q)
	j.k, errs[1] = f32Of(k)
	j.v, errs[2] = f32Of(v)
	j.a, errs[3] = f32Of(a)
	j.b, errs[4] = f32Of(bt)
	j.dst, errs[5] = f32Of(dst)
	j.s, errs[6] = f32Of(state)
	j.ns, errs[7] = f32Of(newState)
	var al, db []float32
	al, errs[8] = f32Of(g.ALog)
	db, errs[9] = f32Of(g.DtBias)
	if err := firstErr(errs[:]...); err != nil {
		b.fail("gated_delta_net", err)
		return
	}
	j.aLog, j.dtBias = row(al, g.ALog, 0), row(db, g.DtBias, 0)
	j.simd = b.simd
	j.scale = g.QScale()
	j.inPlace = state.Buf == newState.Buf && state.Off == newState.Off && state.Stride == newState.Stride
	j.group = g.VHeads / g.KHeads
	j.dk, j.dv = g.KDim, g.VDim
	j.chunk = g.Chunk
	b.pool.run(g.VHeads, func(_, h int) {
		// The head's state rows, copied to newState first unless in place.
		srow := func(r int) []float32 { return row(j.ns, newState, h*j.dk+r) }
		if !j.inPlace {
			for r := 0; r < j.dk; r++ {
				copy(srow(r), row(j.s, state, h*j.dk+r))
			}
		}
		if j.chunk > 0 && j.t > 1 {
			j.chunked(h, srow)
		} else {
			j.recurrent(h, srow)
		}
	})
}

// gates returns step i's log decay and β for head h.
func (j *deltaJob) gates(i, h int) (float32, float32) {
	return kernels.GatedDeltaGates(row(j.a, j.at, i)[h], row(j.b, j.bt, i)[h], j.aLog[h], j.dtBias[h])
}

// loadQK writes step i's normalized query and key of the key head serving
// value head h into qn and kn.
func (j *deltaJob) loadQK(i, h int, qn, kn []float32) {
	src := h / j.group
	copy(qn, row(j.q, j.qt, i)[src*j.dk:(src+1)*j.dk])
	copy(kn, row(j.k, j.kt, i)[src*j.dk:(src+1)*j.dk])
	if j.g.L2Norm {
		kernels.L2Normalize(qn, j.scale)
		kernels.L2Normalize(kn, 1)
		return
	}
	for c := range qn {
		qn[c] *= j.scale
	}
}

// recurrent runs the token-by-token recurrence for head h: per step two
// passes over the state, the first reading Sᵀk̂ from the old state, the
// second decaying and updating it and reading the output. Sums run in f64;
// the state is stored back in f32 after every step.
func (j *deltaJob) recurrent(h int, srow func(int) []float32) {
	dk, dv := j.dk, j.dv
	f := getF64(2 * dv)
	defer putF64(f)
	kv, o := (*f)[:dv], (*f)[dv:2*dv]
	qn, kn := make([]float32, dk), make([]float32, dk)
	for i := 0; i < j.t; i++ {
		j.loadQK(i, h, qn, kn)
		lg, beta := j.gates(i, h)
		decay := math.Exp(float64(lg))
		clear(kv)
		for r := 0; r < dk; r++ {
			axpy64f32(j.simd, kv, float64(kn[r]), srow(r))
		}
		vr := row(j.v, j.vt, i)[h*dv : (h+1)*dv]
		for c := range kv {
			kv[c] = (float64(vr[c]) - decay*kv[c]) * float64(beta)
		}
		clear(o)
		for r := 0; r < dk; r++ {
			updateRow(j.simd, srow(r), kv, o, decay, float64(kn[r]), float64(qn[r]))
		}
		or := row(j.dst, j.dt, i)[h*dv : (h+1)*dv]
		for c, v := range o {
			or[c] = float32(v)
		}
	}
}

// chunked runs the chunked (WY) form for head h. Within a chunk of n steps
// with cumulative log decays γ, start state S₀, normalized keys K and
// queries Q (rows k_t, q_t):
//
//	u_t = β_t(v_t − e^{γ_t}·S₀ᵀk_t) − Σ_{s<t} β_t·e^{γ_t−γ_s}(k_t·k_s)·u_s
//	o_t = e^{γ_t}·S₀ᵀq_t + Σ_{s≤t} e^{γ_t−γ_s}(q_t·k_s)·u_s
//	S   = e^{γ_n}·S₀ + Σ_s e^{γ_n−γ_s}·k_s ⊗ u_s
//
// which is the recurrence unrolled (u_t is the delta it writes at step t).
// Every factor e^{γ_t−γ_s} with s ≤ t is at most 1, so nothing overflows.
// The state reads and writes are three matrix products per chunk (register-
// blocked on AVX2) instead of three passes over the state per token; only
// the forward substitution for u stays sequential. Everything runs in f64,
// the state across chunks included; it is stored back in f32 at the end.
func (j *deltaJob) chunked(h int, srow func(int) []float32) {
	dk, dv, cs := j.dk, j.dv, j.chunk
	f := getF64(dk*dv + 2*cs*dk + dk*cs + 2*cs*dv + 3*cs*cs + 2*cs)
	defer putF64(f)
	buf := *f
	sd, buf := buf[:dk*dv], buf[dk*dv:]     // the state, f64
	kq, buf := buf[:2*cs*dk], buf[2*cs*dk:] // rows k_t, then rows q_t
	kt, buf := buf[:dk*cs], buf[dk*cs:]     // Kᵀ (dk × cs)
	uo, buf := buf[:2*cs*dv], buf[2*cs*dv:] // S₀ᵀk_t → u_t, then S₀ᵀq_t → o_t
	g2, buf := buf[:2*cs*cs], buf[2*cs*cs:] // k_t·k_s, then q_t·k_s
	dec, buf := buf[:cs*cs], buf[cs*cs:]    // e^{γ_t−γ_s}, s ≤ t
	gam, betas := buf[:cs], buf[cs:2*cs]
	for r := 0; r < dk; r++ {
		for c, v := range srow(r) {
			sd[r*dv+c] = float64(v)
		}
	}
	qn, kn := make([]float32, dk), make([]float32, dk)
	for t0 := 0; t0 < j.t; t0 += cs {
		n := min(cs, j.t-t0)
		km, qm := kq[:n*dk], kq[n*dk:2*n*dk]
		um, om := uo[:n*dv], uo[n*dv:2*n*dv]
		kk, qk := g2[:n*cs], g2[n*cs:2*n*cs]
		var cum float64
		for i := 0; i < n; i++ {
			j.loadQK(t0+i, h, qn, kn)
			for c := range qn {
				qm[i*dk+c], km[i*dk+c] = float64(qn[c]), float64(kn[c])
				kt[c*cs+i] = float64(kn[c])
			}
			lg, beta := j.gates(t0+i, h)
			cum += float64(lg)
			gam[i], betas[i] = cum, float64(beta)
		}
		for i := 0; i < n; i++ {
			for s := 0; s <= i; s++ {
				dec[i*cs+s] = math.Exp(gam[i] - gam[s])
			}
		}
		// [K; Q]·S₀ and [K; Q]·Kᵀ.
		clear(uo[:2*n*dv])
		gemm64(j.simd, uo, dv, kq, dk, sd, dv, 2*n, dv, dk)
		clear(g2[:2*n*cs])
		gemm64(j.simd, g2, cs, kq, dk, kt, cs, 2*n, n, dk)
		// u_t by forward substitution, in place of S₀ᵀk_t.
		for i := 0; i < n; i++ {
			u := um[i*dv : (i+1)*dv]
			vr := row(j.v, j.vt, t0+i)[h*dv : (h+1)*dv]
			e := math.Exp(gam[i])
			for c := range u {
				u[c] = betas[i] * (float64(vr[c]) - e*u[c])
			}
			for s := 0; s < i; s++ {
				axpy64(j.simd, u, -betas[i]*dec[i*cs+s]*kk[i*cs+s], um[s*dv:(s+1)*dv])
			}
		}
		// o_t = e^{γ_t}·S₀ᵀq_t + P·U with P the decayed, causal q_t·k_s.
		for i := 0; i < n; i++ {
			p := qk[i*cs : i*cs+n]
			for s := range p {
				if s <= i {
					p[s] *= dec[i*cs+s]
				} else {
					p[s] = 0
				}
			}
			e := math.Exp(gam[i])
			o := om[i*dv : (i+1)*dv]
			for c := range o {
				o[c] *= e
			}
		}
		gemm64(j.simd, om, dv, qk, cs, um, dv, n, dv, n)
		for i := 0; i < n; i++ {
			or := row(j.dst, j.dt, t0+i)[h*dv : (h+1)*dv]
			for c, v := range om[i*dv : (i+1)*dv] {
				or[c] = float32(v)
			}
		}
		// S = e^{γ_n}·S₀ + (Kᵀ scaled by e^{γ_n−γ_s})·U.
		last := gam[n-1]
		for s := 0; s < n; s++ {
			w := math.Exp(last - gam[s])
			for r := 0; r < dk; r++ {
				kt[r*cs+s] *= w
			}
		}
		el := math.Exp(last)
		for i := range sd {
			sd[i] *= el
		}
		gemm64(j.simd, sd, dv, kt, cs, um, dv, dk, dv, n)
	}
	for r := 0; r < dk; r++ {
		st := srow(r)
		for c := range st {
			st[c] = float32(sd[r*dv+c])
		}
	}
}

// gemm64 adds A·B to C, with A m×k, B k×n and C m×n (row strides lda,
// ldb, ldc): 4×8 register blocks in assembly, the edges in Go.
func gemm64(simd bool, c []float64, ldc int, a []float64, lda int, b []float64, ldb int, m, n, k int) {
	mb, nb := 0, 0
	if simd && k > 0 {
		mb, nb = m&^3, n&^7
		for j := 0; j < nb; j += 8 {
			for i := 0; i < mb; i += 4 {
				gemm4x8asm(&c[i*ldc+j], ldc, &a[i*lda], lda, &b[j], ldb, k)
			}
		}
	}
	plain := func(i0, i1, j0, j1 int) {
		if j0 >= j1 {
			return
		}
		for i := i0; i < i1; i++ {
			cr := c[i*ldc+j0 : i*ldc+j1]
			for p := 0; p < k; p++ {
				x := a[i*lda+p]
				br := b[p*ldb+j0 : p*ldb+j1]
				for j, v := range br {
					cr[j] += x * v
				}
			}
		}
	}
	plain(mb, m, 0, n)
	plain(0, mb, nb, n)
}

// f64 scratch, shared by the workers.
var f64Pool = sync.Pool{New: func() any { return new([]float64) }}

func getF64(n int) *[]float64 {
	p := f64Pool.Get().(*[]float64)
	if cap(*p) < n {
		*p = make([]float64, n)
	}
	*p = (*p)[:n]
	return p
}

func putF64(p *[]float64) { f64Pool.Put(p) }

// axpy64 adds a·x to dst.
func axpy64(simd bool, dst []float64, a float64, x []float64) {
	x = x[:len(dst)]
	if m := len(dst) &^ 3; simd && m > 0 {
		axpy64asm(&dst[0], a, &x[0], m)
		dst, x = dst[m:], x[m:]
	}
	for i, v := range x {
		dst[i] += a * v
	}
}

// axpy64f32 adds a·x (f32 values) to dst.
func axpy64f32(simd bool, dst []float64, a float64, x []float32) {
	x = x[:len(dst)]
	if m := len(dst) &^ 3; simd && m > 0 {
		axpy64f32asm(&dst[0], a, &x[0], m)
		dst, x = dst[m:], x[m:]
	}
	for i, v := range x {
		dst[i] += a * float64(v)
	}
}

// updateRow stores s ← decay·s + k·delta (rounded to f32) and adds q times
// the unrounded new row to o.
func updateRow(simd bool, s []float32, delta, o []float64, decay, k, q float64) {
	delta, o = delta[:len(s)], o[:len(s)]
	if m := len(s) &^ 3; simd && m > 0 {
		updateRowAsm(&s[0], &delta[0], &o[0], decay, k, q, m)
		s, delta, o = s[m:], delta[m:], o[m:]
	}
	for c, v := range s {
		n := decay*float64(v) + k*delta[c]
		s[c] = float32(n)
		o[c] += q * n
	}
}
