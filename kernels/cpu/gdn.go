package cpu

import (
	"math"

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
	j.simd = b.simd && g.KDim%8 == 0 && g.VDim%8 == 0
	j.scale = g.QScale()
	j.inPlace = state.Buf == newState.Buf && state.Off == newState.Off && state.Stride == newState.Stride
	j.group = g.VHeads / g.KHeads
	j.dk, j.dv = g.KDim, g.VDim
	j.chunk = g.Chunk
	b.pool.run(g.VHeads, func(worker, h int) {
		sc := &b.scratch[worker]
		// The head's state rows, copied to newState first unless in place.
		srow := func(r int) []float32 { return row(j.ns, newState, h*j.dk+r) }
		if !j.inPlace {
			for r := 0; r < j.dk; r++ {
				copy(srow(r), row(j.s, state, h*j.dk+r))
			}
		}
		if j.chunk > 0 && j.t > 1 {
			j.chunked(sc, h, srow)
		} else {
			j.recurrent(sc, h, srow)
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

func (j *deltaJob) axpy(dst []float32, a float32, x []float32) {
	if j.simd {
		axpyF32(&dst[0], a, &x[0], len(dst))
		return
	}
	for i, v := range x {
		dst[i] += a * v
	}
}

func (j *deltaJob) dot(a, b []float32) float32 {
	if j.simd {
		return dotF32(&a[0], &b[0], len(a))
	}
	var s float32
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

// recurrent runs the token-by-token recurrence for head h: per step two
// passes over the state, the first reading Sᵀk̂ from the old state, the
// second decaying and updating it and reading the output.
func (j *deltaJob) recurrent(sc *scratch, h int, srow func(int) []float32) {
	dk, dv := j.dk, j.dv
	buf := sc.floats(2*dk + dv)
	qn, kn, kv := buf[:dk], buf[dk:2*dk], buf[2*dk:]
	for i := 0; i < j.t; i++ {
		j.loadQK(i, h, qn, kn)
		lg, beta := j.gates(i, h)
		decay := float32(math.Exp(float64(lg)))
		clear(kv)
		for r := 0; r < dk; r++ {
			j.axpy(kv, kn[r], srow(r))
		}
		vr := row(j.v, j.vt, i)[h*dv : (h+1)*dv]
		for c := range kv {
			kv[c] = (vr[c] - decay*kv[c]) * beta
		}
		o := row(j.dst, j.dt, i)[h*dv : (h+1)*dv]
		clear(o)
		for r := 0; r < dk; r++ {
			s := srow(r)
			for c := range s {
				s[c] *= decay
			}
			j.axpy(s, kn[r], kv)
			j.axpy(o, qn[r], s)
		}
	}
}

// chunked runs the chunked (WY) form for head h. Within a chunk of n steps
// with cumulative log decays γ, start state S₀, normalized keys K and
// queries Q:
//
//	u_t = β_t(v_t − e^{γ_t}·S₀ᵀk_t) − Σ_{s<t} β_t·e^{γ_t−γ_s}(k_t·k_s)·u_s
//	o_t = e^{γ_t}·S₀ᵀq_t + Σ_{s≤t} e^{γ_t−γ_s}(q_t·k_s)·u_s
//	S   = e^{γ_n}·S₀ + Σ_s e^{γ_n−γ_s}·k_s ⊗ u_s
//
// which is the recurrence unrolled (u_t is the delta it writes at step t).
// Every factor e^{γ_t−γ_s} with s ≤ t is at most 1, so nothing overflows.
func (j *deltaJob) chunked(sc *scratch, h int, srow func(int) []float32) {
	dk, dv, cs := j.dk, j.dv, j.chunk
	buf := sc.floats(2*cs*dk + 2*cs*dv + 2*cs*cs + 2*cs)
	qm, buf := buf[:cs*dk], buf[cs*dk:]
	km, buf := buf[:cs*dk], buf[cs*dk:]
	um, buf := buf[:cs*dv], buf[cs*dv:] // S₀ᵀk_t, then u_t
	qs, buf := buf[:cs*dv], buf[cs*dv:] // S₀ᵀq_t
	kk, buf := buf[:cs*cs], buf[cs*cs:]
	qk, buf := buf[:cs*cs], buf[cs*cs:]
	gam, betas := buf[:cs], buf[cs:2*cs]
	for t0 := 0; t0 < j.t; t0 += cs {
		n := min(cs, j.t-t0)
		var cum float64
		for i := 0; i < n; i++ {
			j.loadQK(t0+i, h, qm[i*dk:(i+1)*dk], km[i*dk:(i+1)*dk])
			lg, beta := j.gates(t0+i, h)
			cum += float64(lg)
			gam[i], betas[i] = float32(cum), beta
		}
		// S₀ᵀk_t and S₀ᵀq_t, row by row of S₀ so each row is read once.
		clear(um[:n*dv])
		clear(qs[:n*dv])
		for r := 0; r < dk; r++ {
			s := srow(r)
			for i := 0; i < n; i++ {
				j.axpy(um[i*dv:(i+1)*dv], km[i*dk+r], s)
				j.axpy(qs[i*dv:(i+1)*dv], qm[i*dk+r], s)
			}
		}
		for i := 0; i < n; i++ {
			ki, qi := km[i*dk:(i+1)*dk], qm[i*dk:(i+1)*dk]
			for s := 0; s < i; s++ {
				kk[i*cs+s] = j.dot(ki, km[s*dk:(s+1)*dk])
			}
			for s := 0; s <= i; s++ {
				qk[i*cs+s] = j.dot(qi, km[s*dk:(s+1)*dk])
			}
		}
		// u_t by forward substitution, in place of S₀ᵀk_t.
		for i := 0; i < n; i++ {
			u := um[i*dv : (i+1)*dv]
			vr := row(j.v, j.vt, t0+i)[h*dv : (h+1)*dv]
			e := float32(math.Exp(float64(gam[i])))
			for c := range u {
				u[c] = betas[i] * (vr[c] - e*u[c])
			}
			for s := 0; s < i; s++ {
				f := betas[i] * float32(math.Exp(float64(gam[i]-gam[s]))) * kk[i*cs+s]
				j.axpy(u, -f, um[s*dv:(s+1)*dv])
			}
		}
		// Outputs.
		for i := 0; i < n; i++ {
			o := row(j.dst, j.dt, t0+i)[h*dv : (h+1)*dv]
			e := float32(math.Exp(float64(gam[i])))
			q := qs[i*dv : (i+1)*dv]
			for c := range o {
				o[c] = e * q[c]
			}
			for s := 0; s <= i; s++ {
				j.axpy(o, float32(math.Exp(float64(gam[i]-gam[s])))*qk[i*cs+s], um[s*dv:(s+1)*dv])
			}
		}
		// The state at the end of the chunk; kk's first row is free to
		// hold the per-step key weights e^{γ_n−γ_s}.
		last := gam[n-1]
		w := kk[:n]
		for s := 0; s < n; s++ {
			w[s] = float32(math.Exp(float64(last - gam[s])))
		}
		el := float32(math.Exp(float64(last)))
		for r := 0; r < dk; r++ {
			st := srow(r)
			for c := range st {
				st[c] *= el
			}
			for s := 0; s < n; s++ {
				j.axpy(st, w[s]*km[s*dk+r], um[s*dv:(s+1)*dv])
			}
		}
	}
}
