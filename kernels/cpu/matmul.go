package cpu

import (
	"fmt"

	"github.com/maniac-ai/mach/kernels"
)

// Matrix products. Every output y[n][r] = Σ_k W[r][k]·x[n][k] is computed
// by the same operations whatever the number of rows n: the weight row is
// dequantized to f32 exactly as quant does (in registers or into scratch),
// and the dot product accumulates 8 lanes over k in order and then reduces
// them with one fixed tree (plain Go: one sequential f32 sum per output).
// That makes batched and single-sequence results bit-identical.

// inlineMACs is the work below which a product runs on the calling
// goroutine: waking workers costs more than it saves.
const inlineMACs = 1 << 16

// mmTask is one matrix product: a weight and the rows it applies to.
type mmTask struct {
	w      *weight
	x, y   []float32
	xt, yt kernels.Tensor
}

// MatMul implements kernels.Backend.
func (b *Backend) MatMul(dst, x kernels.Tensor, w kernels.Weight) {
	t, err := b.mmTask(dst, x, w)
	if err != nil {
		b.fail("matmul", err)
		return
	}
	b.runTasks([]mmTask{t})
}

// MatMulGrouped implements kernels.GroupedMatMuler: one parallel loop over
// every (expert, row block), so each expert's weights are read once.
func (b *Backend) MatMulGrouped(dst, x kernels.Tensor, ws []kernels.Weight, offs []int) {
	if len(offs) != len(ws)+1 || offs[0] != 0 || offs[len(ws)] != x.Rows {
		b.failf("matmul_grouped", "%d offsets for %d weights over %d rows", len(offs), len(ws), x.Rows)
		return
	}
	tasks := make([]mmTask, 0, len(ws))
	for i, w := range ws {
		a, e := offs[i], offs[i+1]
		if e < a {
			b.failf("matmul_grouped", "offsets decrease at %d", i)
			return
		}
		if a == e {
			continue
		}
		t, err := b.mmTask(dst.RowRange(a, e), x.RowRange(a, e), w)
		if err != nil {
			b.fail("matmul_grouped", err)
			return
		}
		tasks = append(tasks, t)
	}
	b.runTasks(tasks)
}

func (b *Backend) mmTask(dst, x kernels.Tensor, w kernels.Weight) (mmTask, error) {
	cw, err := weightOf(w)
	if err != nil {
		return mmTask{}, err
	}
	xd, err := f32Of(x)
	if err != nil {
		return mmTask{}, err
	}
	yd, err := f32Of(dst)
	if err != nil {
		return mmTask{}, err
	}
	if x.Cols != cw.m.Cols || dst.Cols != cw.m.Rows || dst.Rows != x.Rows {
		return mmTask{}, fmt.Errorf("%w: %v · W[%d×%d] → %v", errShape, x, cw.m.Rows, cw.m.Cols, dst)
	}
	return mmTask{w: cw, x: xd, y: yd, xt: x, yt: dst}, nil
}

// blockRows picks how many weight rows one unit of parallel work covers:
// a multiple of 4 whose dequantized f32 copy stays near 128 KiB, smaller
// when that would leave workers idle.
func (b *Backend) blockRows(rows, cols int) int {
	br := max(4, min(64, (32<<10)/max(cols, 1))&^3)
	want := 4 * b.pool.n
	if rows/br < want {
		br = max(4, (rows/want)&^3)
	}
	return br
}

func (b *Backend) runTasks(tasks []mmTask) {
	if len(tasks) == 0 {
		return
	}
	type unit struct{ task, r0, r1 int }
	var units []unit
	macs := 0
	for ti, t := range tasks {
		rows := t.w.m.Rows
		br := b.blockRows(rows, t.w.m.Cols)
		for r := 0; r < rows; r += br {
			units = append(units, unit{ti, r, min(r+br, rows)})
		}
		macs += rows * t.w.m.Cols * t.xt.Rows
	}
	do := func(worker, i int) {
		u := units[i]
		b.mmRows(worker, &tasks[u.task], u.r0, u.r1)
	}
	if macs < inlineMACs {
		for i := range units {
			do(0, i)
		}
		return
	}
	b.pool.run(len(units), do)
}

// mmRows computes outputs [r0, r1) of every row of task t.
func (b *Backend) mmRows(worker int, t *mmTask, r0, r1 int) {
	w := t.w
	k := w.m.Cols
	n := t.xt.Rows
	xrow := func(i int) []float32 { return row(t.x, t.xt, i) }
	yrow := func(i int) []float32 { return row(t.y, t.yt, i) }

	if !b.simd {
		// Reference: dequantize each weight row once, then one plain dot
		// per input row.
		wr := b.scratch[worker].floats(k)
		for r := r0; r < r1; r++ {
			wrow := wr
			if w.f32 != nil {
				wrow = w.f32[r*k : (r+1)*k]
			} else {
				dequantRowGo(w.m, r, wr)
			}
			for i := 0; i < n; i++ {
				yrow(i)[r] = dotGo(wrow, xrow(i))
			}
		}
		return
	}
	if k%8 != 0 {
		// The assembly works on whole 8-lane chunks; such shapes (none in
		// real checkpoints) take the plain path, for every n alike.
		wr := b.scratch[worker].floats(k)
		for r := r0; r < r1; r++ {
			b.dequantRow(w, r, wr)
			for i := 0; i < n; i++ {
				yrow(i)[r] = dotGo(wr, xrow(i))
			}
		}
		return
	}

	if n == 1 && w.fused != fusedNone {
		b.gemvFused(w, xrow(0), yrow(0), r0, r1)
		return
	}

	// Weight rows as f32: in place for aligned f32 weights, else
	// dequantized into scratch.
	nr := r1 - r0
	var wbuf []float32
	var ld int
	if w.f32 != nil {
		wbuf = w.f32[r0*k : r1*k]
	} else {
		wbuf = b.scratch[worker].floats(nr * k)
		for r := 0; r < nr; r++ {
			b.dequantRow(w, r0+r, wbuf[r*k:(r+1)*k])
		}
	}
	ld = k
	var out [12]float32
	i := 0
	for ; i+3 <= n; i += 3 {
		x0, x1, x2 := xrow(i), xrow(i+1), xrow(i+2)
		y0, y1, y2 := yrow(i), yrow(i+1), yrow(i+2)
		r := 0
		for ; r+4 <= nr; r += 4 {
			dotF32x4x3(&wbuf[r*ld], ld, &x0[0], &x1[0], &x2[0], k, &out)
			for q := 0; q < 4; q++ {
				y0[r0+r+q] = out[3*q]
				y1[r0+r+q] = out[3*q+1]
				y2[r0+r+q] = out[3*q+2]
			}
		}
		for ; r < nr; r++ {
			wr := wbuf[r*ld : r*ld+k]
			y0[r0+r] = dotF32(&wr[0], &x0[0], k)
			y1[r0+r] = dotF32(&wr[0], &x1[0], k)
			y2[r0+r] = dotF32(&wr[0], &x2[0], k)
		}
	}
	for ; i < n; i++ {
		x0, y0 := xrow(i), yrow(i)
		r := 0
		var o4 [4]float32
		for ; r+4 <= nr; r += 4 {
			dotF32x4x1(&wbuf[r*ld], ld, &x0[0], k, &o4)
			copy(y0[r0+r:r0+r+4], o4[:])
		}
		for ; r < nr; r++ {
			y0[r0+r] = dotF32(&wbuf[r*ld], &x0[0], k)
		}
	}
}

// gemvFused computes outputs [r0, r1) for one input row with the fused
// dequantize-dot kernels, four weight rows at a time.
func (b *Backend) gemvFused(w *weight, x, y []float32, r0, r1 int) {
	m := w.m
	rb := m.Format.RowBytes(m.Cols)
	sb := 2 * m.Groups()
	gs := m.Format.GroupSize
	var out [4]float32
	r := r0
	for ; r+4 <= r1; r += 4 {
		codes := m.Data[r*rb:]
		sc := m.Scales[r*sb:]
		bi := m.Biases[r*sb:]
		if w.fused == fusedAffine4BF16 {
			gemvAffine4BF16x4(&codes[0], rb, &sc[0], &bi[0], sb, m.Groups(), gs/8, &x[0], &out)
		} else {
			gemvAffine8BF16x4(&codes[0], rb, &sc[0], &bi[0], sb, m.Groups(), gs/8, &x[0], &out)
		}
		copy(y[r:r+4], out[:])
	}
	if r < r1 {
		var wr [8192]float32
		tmp := wr[:0]
		if m.Cols <= len(wr) {
			tmp = wr[:m.Cols]
		} else {
			tmp = make([]float32, m.Cols)
		}
		for ; r < r1; r++ {
			b.dequantRow(w, r, tmp)
			y[r] = dotF32(&tmp[0], &x[0], m.Cols)
		}
	}
}

// dotGo is the plain-Go dot product.
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	for i, v := range a {
		s += v * b[i]
	}
	return s
}
