package cpu

import (
	"fmt"
	"math"
	"slices"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/quant"
)

// forRows runs fn for every row, on the pool when the work is large.
func (b *Backend) forRows(rows, cols int, fn func(worker, i int)) {
	if rows*cols < inlineMACs/4 {
		for i := 0; i < rows; i++ {
			fn(0, i)
		}
		return
	}
	b.pool.run(rows, fn)
}

// RMSNorm implements kernels.Backend. The mean of squares accumulates in
// f64, then y = x·(1/√(mean+eps)) in f32, times w (or 1+w).
func (b *Backend) RMSNorm(dst, x, w kernels.Tensor, eps float32, addOne bool) {
	d, err := f32Of(dst)
	if err != nil {
		b.fail("rmsnorm", err)
		return
	}
	xs, err := f32Of(x)
	if err != nil {
		b.fail("rmsnorm", err)
		return
	}
	if err := sameShape(dst, x); err != nil {
		b.fail("rmsnorm", err)
		return
	}
	var wv []float32
	if !w.IsZero() {
		ws, err := f32Of(w)
		if err != nil || w.Cols != x.Cols || w.Rows != 1 {
			b.failf("rmsnorm", "weight %v for rows of %d", w, x.Cols)
			return
		}
		wv = row(ws, w, 0)
	}
	b.forRows(x.Rows, x.Cols, func(_, i int) {
		in, out := row(xs, x, i), row(d, dst, i)
		var ss float64
		for _, v := range in {
			ss += float64(v) * float64(v)
		}
		r := float32(1 / math.Sqrt(float64(float32(ss/float64(len(in)))+eps)))
		for j, v := range in {
			y := v * r
			if wv != nil {
				if addOne {
					y *= 1 + wv[j]
				} else {
					y *= wv[j]
				}
			}
			out[j] = y
		}
	})
}

// RoPE implements kernels.Backend. Angles are float32(pos)·inv_freq in
// f32, as transformers computes them; cos and sin come from f64.
func (b *Backend) RoPE(x kernels.Tensor, pos []int32, r kernels.RoPE) {
	xs, err := f32Of(x)
	if err != nil {
		b.fail("rope", err)
		return
	}
	if r.HeadDim <= 0 || x.Cols%r.HeadDim != 0 || r.Dims%2 != 0 || r.Offset < 0 || r.Offset+r.Dims > r.HeadDim || len(r.InvFreq) < r.Dims/2 || len(pos) != x.Rows {
		b.failf("rope", "bad spec for %v: head %d, dims %d at %d, %d frequencies, %d positions", x, r.HeadDim, r.Dims, r.Offset, len(r.InvFreq), len(pos))
		return
	}
	half := r.Dims / 2
	heads := x.Cols / r.HeadDim
	scale := r.Scale
	if scale == 0 {
		scale = 1
	}
	b.forRows(x.Rows, x.Cols, func(worker, i int) {
		cs := b.scratch[worker].auxFloats(2 * half)
		cos, sin := cs[:half], cs[half:]
		p := float32(pos[i])
		for j := 0; j < half; j++ {
			a := float64(p * r.InvFreq[j])
			cos[j] = float32(math.Cos(a)) * scale
			sin[j] = float32(math.Sin(a)) * scale
			if r.Inverse {
				sin[j] = -sin[j]
			}
		}
		xr := row(xs, x, i)
		for h := 0; h < heads; h++ {
			v := xr[h*r.HeadDim+r.Offset : h*r.HeadDim+r.Offset+r.Dims]
			for j := 0; j < half; j++ {
				var a, c *float32
				if r.Interleaved {
					a, c = &v[2*j], &v[2*j+1]
				} else {
					a, c = &v[j], &v[j+half]
				}
				x1, x2 := *a, *c
				*a = float32(x1*cos[j]) - float32(x2*sin[j])
				*c = float32(x2*cos[j]) + float32(x1*sin[j])
			}
		}
	})
}

// Activate implements kernels.Backend.
func (b *Backend) Activate(dst, gate, up kernels.Tensor, a kernels.Activation) {
	d, err1 := f32Of(dst)
	g, err2 := f32Of(gate)
	u, err3 := f32Of(up)
	if err := firstErr(err1, err2, err3, sameShape(dst, gate, up)); err != nil {
		b.fail("activate", err)
		return
	}
	f, err := activation(a)
	if err != nil {
		b.fail("activate", err)
		return
	}
	fast := b.simd && a.Kind == kernels.SiLU
	b.forRows(dst.Rows, dst.Cols, func(_, i int) {
		dr, gr, ur := row(d, dst, i), row(g, gate, i), row(u, up, i)
		j := 0
		if fast && len(dr) >= 8 {
			j = len(dr) &^ 7
			siluMul(&dr[0], &gr[0], &ur[0], j)
		}
		for ; j < len(dr); j++ {
			dr[j] = f(gr[j], ur[j])
		}
	})
}

// activation returns the elementwise function of a gated activation.
func activation(a kernels.Activation) (func(g, u float32) float32, error) {
	switch a.Kind {
	case kernels.SiLU:
		return func(g, u float32) float32 { return silu(g) * u }, nil
	case kernels.SiLULimited:
		alpha, lim := a.Alpha, a.Limit
		return func(g, u float32) float32 {
			if lim > 0 {
				g = min(g, lim)
				u = min(max(u, -lim), lim)
			}
			glu := g * sigmoid(g*alpha)
			return (u + a.UpOffset) * glu
		}, nil
	case kernels.GeLUTanh:
		return func(g, u float32) float32 { return geluTanh(g) * u }, nil
	}
	return nil, fmt.Errorf("%w: activation kind %d", kernels.ErrUnsupported, a.Kind)
}

func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

// silu is x·σ(x), as torch computes it (x / (1 + e^-x)).
func silu(x float32) float32 { return float32(float64(x) / (1 + math.Exp(-float64(x)))) }

func geluTanh(x float32) float32 {
	xd := float64(x)
	return float32(0.5 * xd * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(xd+0.044715*xd*xd*xd))))
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func (b *Backend) binary(op string, dst, x, y kernels.Tensor, f func(a, b float32) float32) {
	d, err1 := f32Of(dst)
	xs, err2 := f32Of(x)
	ys, err3 := f32Of(y)
	shapeErr := sameShape(dst, x)
	if y.Rows != 1 || y.Cols != x.Cols {
		shapeErr = firstErr(shapeErr, sameShape(dst, y))
	}
	if err := firstErr(err1, err2, err3, shapeErr); err != nil {
		b.fail(op, err)
		return
	}
	bcast := y.Rows == 1
	b.forRows(dst.Rows, dst.Cols, func(_, i int) {
		yi := i
		if bcast {
			yi = 0
		}
		dr, xr, yr := row(d, dst, i), row(xs, x, i), row(ys, y, yi)
		for j := range dr {
			dr[j] = f(xr[j], yr[j])
		}
	})
}

// Add implements kernels.Backend.
func (b *Backend) Add(dst, x, y kernels.Tensor) {
	b.binary("add", dst, x, y, func(a, c float32) float32 { return a + c })
}

// Mul implements kernels.Backend.
func (b *Backend) Mul(dst, x, y kernels.Tensor) {
	b.binary("mul", dst, x, y, func(a, c float32) float32 { return a * c })
}

func (b *Backend) unary(op string, dst, x kernels.Tensor, f func(a float32) float32) {
	d, err1 := f32Of(dst)
	xs, err2 := f32Of(x)
	if err := firstErr(err1, err2, sameShape(dst, x)); err != nil {
		b.fail(op, err)
		return
	}
	b.forRows(dst.Rows, dst.Cols, func(_, i int) {
		dr, xr := row(d, dst, i), row(xs, x, i)
		for j := range dr {
			dr[j] = f(xr[j])
		}
	})
}

// Fill implements kernels.Backend.
func (b *Backend) Fill(dst kernels.Tensor, v float32) {
	d, err := f32Of(dst)
	if err != nil {
		b.fail("fill", err)
		return
	}
	for i := 0; i < dst.Rows; i++ {
		r := row(d, dst, i)
		for j := range r {
			r[j] = v
		}
	}
}

// Scale implements kernels.Backend.
func (b *Backend) Scale(dst, x kernels.Tensor, s float32) {
	b.unary("scale", dst, x, func(a float32) float32 { return a * s })
}

// Softcap implements kernels.Backend.
func (b *Backend) Softcap(dst, x kernels.Tensor, c float32) {
	b.unary("softcap", dst, x, func(a float32) float32 { return c * float32(math.Tanh(float64(a/c))) })
}

// Softmax implements kernels.Backend.
func (b *Backend) Softmax(dst, x kernels.Tensor) {
	d, err1 := f32Of(dst)
	xs, err2 := f32Of(x)
	if err := firstErr(err1, err2, sameShape(dst, x)); err != nil {
		b.fail("softmax", err)
		return
	}
	b.forRows(dst.Rows, dst.Cols, func(_, i int) { softmaxRow(row(d, dst, i), row(xs, x, i)) })
}

// softmaxRow writes softmax(x) into d (which may alias x): exp(x - max)
// in f32 via f64 exp, normalized by the f32 sum.
func softmaxRow(d, x []float32) {
	m := float32(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	var sum float32
	for j, v := range x {
		e := float32(math.Exp(float64(v - m)))
		d[j] = e
		sum += e
	}
	for j := range d {
		d[j] /= sum
	}
}

// Copy implements kernels.Backend, converting between element types.
func (b *Backend) Copy(dst, src kernels.Tensor) {
	db, err1 := bufOf(dst)
	sb, err2 := bufOf(src)
	if err := firstErr(err1, err2, sameShape(dst, src)); err != nil {
		b.fail("copy", err)
		return
	}
	b.forRows(dst.Rows, dst.Cols, func(_, i int) {
		so, do := src.Off+i*src.Stride, dst.Off+i*dst.Stride
		n := dst.Cols
		switch {
		case db.dt == sb.dt && db.dt == kernels.F32:
			copy(db.f32[do:do+n], sb.f32[so:so+n])
		case db.dt == sb.dt:
			copy(db.u16[do:do+n], sb.u16[so:so+n])
		case sb.dt == kernels.F32:
			s := sb.f32[so : so+n]
			d := db.u16[do : do+n]
			if db.dt == kernels.F16 {
				for j, v := range s {
					d[j] = quant.F32ToF16(v)
				}
			} else {
				for j, v := range s {
					d[j] = quant.F32ToBF16(v)
				}
			}
		default:
			widen(sb, so, n, func(j int, v float32) {
				switch db.dt {
				case kernels.F32:
					db.f32[do+j] = v
				case kernels.F16:
					db.u16[do+j] = quant.F32ToF16(v)
				default:
					db.u16[do+j] = quant.F32ToBF16(v)
				}
			})
		}
	})
}

func widen(sb *buffer, off, n int, put func(j int, v float32)) {
	for j := 0; j < n; j++ {
		h := sb.u16[off+j]
		if sb.dt == kernels.F16 {
			put(j, quant.F16ToF32(h))
		} else {
			put(j, quant.BF16ToF32(h))
		}
	}
}

// Gather implements kernels.Backend.
func (b *Backend) Gather(dst, src kernels.Tensor, rows []int32) {
	d, err1 := f32Of(dst)
	s, err2 := f32Of(src)
	if err := firstErr(err1, err2); err != nil {
		b.fail("gather", err)
		return
	}
	if dst.Rows != len(rows) || dst.Cols != src.Cols {
		b.failf("gather", "%d rows of %v into %v", len(rows), src, dst)
		return
	}
	for _, r := range rows {
		if r < 0 || int(r) >= src.Rows {
			b.failf("gather", "row %d outside %v", r, src)
			return
		}
	}
	b.forRows(dst.Rows, dst.Cols, func(_, i int) { copy(row(d, dst, i), row(s, src, int(rows[i]))) })
}

// ScatterAdd implements kernels.Backend. Additions into one destination row
// happen in order of i, so results do not depend on scheduling.
func (b *Backend) ScatterAdd(dst, src kernels.Tensor, rows []int32, w []float32) {
	d, err1 := f32Of(dst)
	s, err2 := f32Of(src)
	if err := firstErr(err1, err2); err != nil {
		b.fail("scatter_add", err)
		return
	}
	if src.Rows != len(rows) || len(w) != len(rows) || dst.Cols != src.Cols {
		b.failf("scatter_add", "%d rows, %d weights of %v into %v", len(rows), len(w), src, dst)
		return
	}
	for _, r := range rows {
		if r < 0 || int(r) >= dst.Rows {
			b.failf("scatter_add", "row %d outside %v", r, dst)
			return
		}
	}
	// Partition by destination row so each row is written by one worker,
	// in the order of i.
	byDst := make([][]int, dst.Rows)
	for i, r := range rows {
		byDst[r] = append(byDst[r], i)
	}
	b.forRows(dst.Rows, dst.Cols, func(_, r int) {
		out := row(d, dst, r)
		for _, i := range byDst[r] {
			in, wi := row(s, src, i), w[i]
			for j := range out {
				out[j] += float32(wi * in[j])
			}
		}
	})
}

// Route implements kernels.Backend.
func (b *Backend) Route(logits kernels.Tensor, r kernels.Routing, idx []int32, weight []float32) error {
	if err := b.Sync(); err != nil {
		return err
	}
	ls, err := f32Of(logits)
	if err != nil {
		return fmt.Errorf("cpu route: %w", err)
	}
	e := logits.Cols
	if r.K <= 0 || r.K > e || len(idx) < logits.Rows*r.K || len(weight) < logits.Rows*r.K {
		return fmt.Errorf("cpu route: top-%d of %d experts for %d rows", r.K, e, logits.Rows)
	}
	var bias []float32
	if !r.Bias.IsZero() {
		bs, err := f32Of(r.Bias)
		if err != nil || r.Bias.Cols != e {
			return fmt.Errorf("cpu route: bias %v for %d experts", r.Bias, e)
		}
		bias = row(bs, r.Bias, 0)
	}
	scores := make([]float32, e)
	sel := make([]float32, e)
	order := make([]int32, e)
	for i := 0; i < logits.Rows; i++ {
		lr := row(ls, logits, i)
		switch r.Score {
		case kernels.SoftmaxAll:
			softmaxRow(scores, lr)
		case kernels.SoftmaxTopK:
			copy(scores, lr)
		case kernels.Sigmoid:
			for j, v := range lr {
				scores[j] = sigmoid(v)
			}
		case kernels.SqrtSoftplus:
			for j, v := range lr {
				scores[j] = float32(math.Sqrt(softplus(float64(v))))
			}
		default:
			return fmt.Errorf("cpu route: %w: score function %d", kernels.ErrUnsupported, r.Score)
		}
		copy(sel, scores)
		if bias != nil {
			for j := range sel {
				sel[j] += bias[j]
			}
		}
		for j := range order {
			order[j] = int32(j)
		}
		// Highest selection score first; ties go to the lower expert id.
		slices.SortStableFunc(order, func(a, c int32) int {
			switch {
			case sel[a] > sel[c]:
				return -1
			case sel[a] < sel[c]:
				return 1
			}
			return 0
		})
		ids := idx[i*r.K : (i+1)*r.K]
		ws := weight[i*r.K : (i+1)*r.K]
		copy(ids, order[:r.K])
		for k, id := range ids {
			ws[k] = scores[id]
		}
		if r.Score == kernels.SoftmaxTopK {
			softmaxRow(ws, ws)
		}
		if r.Normalize {
			var s float32
			for _, v := range ws {
				s += v
			}
			for k := range ws {
				ws[k] /= s
			}
		}
		if r.Scale != 0 && r.Scale != 1 {
			for k := range ws {
				ws[k] *= r.Scale
			}
		}
	}
	return nil
}

func softplus(x float64) float64 {
	if x > 20 {
		return x
	}
	return math.Log1p(math.Exp(x))
}
