package cpu

import (
	"fmt"
	"math"

	"github.com/maniac-ai/mach/kernels"
)

// Matrix products. Every output y[n][r] = W[r]·x[n] is computed by the
// same sequence of floating-point operations whatever the number of rows
// n, so batched and single-sequence results are bit-identical:
//
//   - plain Go: the weight row dequantized exactly (quant's formula), then
//     one sequential f32 sum;
//   - assembly, MLX affine 4/8-bit with bf16 scales: the canonical
//     order documented in simd_amd64.s, computed straight
//     from the codes for one input row (gemvA4/gemvA8) or from codes
//     unpacked once per block of weight rows for triples of input rows
//     (gemmA4x3);
//   - assembly, other formats: the weight row as f32 (in place, or
//     dequantized exactly into scratch), then 8-lane accumulation over k
//     and one fixed reduction tree (dotF32, dotF32x4x1, dotF32x4x3).

// inlineMACs is the work below which a product runs on the calling
// goroutine: waking workers costs more than it saves.
const inlineMACs = 1 << 16

// tokenTile bounds the input rows one pass over a block of weight rows
// covers, so their prepared copies stay in the L2 cache.
const tokenTile = 30 // a multiple of 3: inputs go by triples

// kTile bounds the weight columns one pass covers, so a quad of unpacked
// rows and a triple of inputs (7 × kTile floats) fit the L1 cache.
const kTile = 512

// mmTask is one matrix product: a weight and the rows it applies to.
type mmTask struct {
	w      *weight
	x, y   []float32
	xt, yt kernels.Tensor
	// rows, when not nil, maps input row i to row rows[i] of xt.
	rows []int32
	// n is the number of input (and output) rows.
	n int
	// For fused weights: the prepared inputs, one row per row of xt —
	// the de-interleaved copy (4-bit; 8-bit uses x itself) and the 8-lane
	// group sums. Tasks of one grouped call share them.
	xp, xs []float32
}

// MatMul implements kernels.Backend.
func (b *Backend) MatMul(dst, x kernels.Tensor, w kernels.Weight) {
	t, err := b.mmTask(dst, x, w)
	if err == nil && dst.Rows != x.Rows {
		err = fmt.Errorf("%w: %v · W → %v", errShape, x, dst)
	}
	if err != nil {
		b.fail("matmul", err)
		return
	}
	b.runTasks([]mmTask{t})
}

// MatMulMulti implements kernels.MultiMatMuler: the products share one
// parallel loop (and one preparation of x).
func (b *Backend) MatMulMulti(dsts []kernels.Tensor, x kernels.Tensor, ws []kernels.Weight) {
	if len(dsts) != len(ws) {
		b.failf("matmul_multi", "%d outputs for %d weights", len(dsts), len(ws))
		return
	}
	tasks := make([]mmTask, 0, len(ws))
	for i, w := range ws {
		t, err := b.mmTask(dsts[i], x, w)
		if err == nil && dsts[i].Rows != x.Rows {
			err = fmt.Errorf("%w: %v · W → %v", errShape, x, dsts[i])
		}
		if err != nil {
			b.fail("matmul_multi", err)
			return
		}
		tasks = append(tasks, t)
	}
	b.runTasks(tasks)
}

// MatMulGrouped implements kernels.GroupedMatMuler: one parallel loop over
// every (expert, row block), so each expert's weights are read once.
func (b *Backend) MatMulGrouped(dst, x kernels.Tensor, rows []int32, ws []kernels.Weight, offs []int) {
	slots := x.Rows
	if rows != nil {
		slots = len(rows)
		for _, r := range rows {
			if r < 0 || int(r) >= x.Rows {
				b.failf("matmul_grouped", "row %d outside %v", r, x)
				return
			}
		}
	}
	if len(offs) != len(ws)+1 || offs[0] != 0 || offs[len(ws)] != slots || dst.Rows != slots {
		b.failf("matmul_grouped", "%d offsets for %d weights over %d rows into %v", len(offs), len(ws), slots, dst)
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
		in := x
		if rows == nil {
			in = x.RowRange(a, e)
		}
		t, err := b.mmTask(dst.RowRange(a, e), in, w)
		if err != nil {
			b.fail("matmul_grouped", err)
			return
		}
		if rows != nil {
			t.rows, t.n = rows[a:e], e-a
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
	if x.Cols != cw.m.Cols || dst.Cols != cw.m.Rows {
		return mmTask{}, fmt.Errorf("%w: %v · W[%d×%d] → %v", errShape, x, cw.m.Rows, cw.m.Cols, dst)
	}
	return mmTask{w: cw, x: xd, y: yd, xt: x, yt: dst, n: dst.Rows}, nil
}

// src returns the row of xt that input row i of the task reads.
func (t *mmTask) src(i int) int {
	if t.rows != nil {
		return int(t.rows[i])
	}
	return i
}

// xrow returns input row i of the task.
func (t *mmTask) xrow(i int) []float32 { return row(t.x, t.xt, t.src(i)) }

// xpRow and xsRow return the prepared input row i.
func (t *mmTask) xpRow(i int) []float32 {
	k := t.w.m.Cols
	return t.xp[t.src(i)*k : (t.src(i)+1)*k]
}

func (t *mmTask) xsRow(i int) []float32 {
	g := t.w.m.Groups()
	return t.xs[t.src(i)*g*8 : (t.src(i)+1)*g*8]
}

// blockRows picks how many weight rows one unit of parallel work covers:
// a multiple of 4 whose f32 copy stays near 128 KiB, smaller when that
// would leave workers idle.
func (b *Backend) blockRows(rows, cols int) int {
	br := max(4, min(64, (32<<10)/max(cols, 1))&^3)
	want := 4 * b.pool.n
	if rows/br < want {
		br = max(4, (rows/want)&^3)
	}
	return br
}

func (b *Backend) fusedPath(w *weight) bool { return b.simd && w.fused != fusedNone }

// prepare fills the tasks' prepared inputs for fused weights, in
// b.prepBuf (reused across calls). Every row of a task's xt is prepared
// once; tasks over the same input (a grouped or multi call) and format
// share the result.
func (b *Backend) prepare(tasks []mmTask) {
	type key struct {
		fused                fusedKind
		groupSize            int
		buf                  kernels.Buffer
		off, rows, cols, std int
	}
	type prep struct {
		t      *mmTask // the task whose xt is prepared
		xp, xs []float32
	}
	keyOf := func(t *mmTask) key {
		return key{t.w.fused, t.w.m.Format.GroupSize, t.xt.Buf, t.xt.Off, t.xt.Rows, t.xt.Cols, t.xt.Stride}
	}
	preps := map[key]*prep{}
	var order []*prep
	need := 0
	for i := range tasks {
		t := &tasks[i]
		if !b.fusedPath(t.w) {
			continue
		}
		k := keyOf(t)
		if preps[k] != nil {
			continue
		}
		p := &prep{t: t}
		preps[k] = p
		order = append(order, p)
		n, cols, g := t.xt.Rows, t.w.m.Cols, t.w.m.Groups()
		need += n * g * 8
		if t.w.fused == fusedAffine4BF16 {
			need += n * cols
		}
	}
	if need == 0 {
		return
	}
	if cap(b.prepBuf) < need {
		b.prepBuf = make([]float32, need)
	}
	buf := b.prepBuf[:need]
	type job struct {
		p   *prep
		row int
	}
	var jobs []job
	for _, p := range order {
		n, cols, g := p.t.xt.Rows, p.t.w.m.Cols, p.t.w.m.Groups()
		p.xs, buf = buf[:n*g*8], buf[n*g*8:]
		if p.t.w.fused == fusedAffine4BF16 {
			p.xp, buf = buf[:n*cols], buf[n*cols:]
		}
		for r := 0; r < n; r++ {
			jobs = append(jobs, job{p, r})
		}
	}
	for i := range tasks {
		t := &tasks[i]
		if b.fusedPath(t.w) {
			p := preps[keyOf(t)]
			t.xp, t.xs = p.xp, p.xs
		}
	}
	do := func(_, i int) {
		j := jobs[i]
		t := j.p.t
		cols, g, gs := t.w.m.Cols, t.w.m.Groups(), t.w.m.Format.GroupSize
		x := row(t.x, t.xt, j.row)
		xs := j.p.xs[j.row*g*8 : (j.row+1)*g*8]
		if t.w.fused == fusedAffine4BF16 {
			prepX4(&j.p.xp[j.row*cols], &xs[0], &x[0], g, gs/16)
		} else {
			prepX8(&xs[0], &x[0], g, gs/8)
		}
	}
	if len(jobs)*tasks[0].w.m.Cols < inlineMACs {
		for i := range jobs {
			do(0, i)
		}
		return
	}
	b.pool.run(len(jobs), do)
}

func (b *Backend) runTasks(tasks []mmTask) {
	if len(tasks) == 0 {
		return
	}
	b.prepare(tasks)
	type unit struct{ task, r0, r1 int }
	var units []unit
	macs := 0
	for ti, t := range tasks {
		rows := t.w.m.Rows
		br := b.blockRows(rows, t.w.m.Cols)
		for r := 0; r < rows; r += br {
			units = append(units, unit{ti, r, min(r+br, rows)})
		}
		macs += rows * t.w.m.Cols * t.n
	}
	do := func(worker, i int) {
		u := units[i]
		t := &tasks[u.task]
		if b.fusedPath(t.w) {
			b.mmFused(worker, t, u.r0, u.r1)
		} else {
			b.mmRows(worker, t, u.r0, u.r1)
		}
	}
	if macs < inlineMACs {
		for i := range units {
			do(0, i)
		}
		return
	}
	b.pool.run(len(units), do)
}

// mmRows computes outputs [r0, r1) of every row of task t for weights
// without a fused kernel.
func (b *Backend) mmRows(worker int, t *mmTask, r0, r1 int) {
	w := t.w
	k := w.m.Cols
	n := t.n
	xrow := t.xrow
	yrow := func(i int) []float32 { return row(t.y, t.yt, i) }

	if !b.simd || k%8 != 0 {
		// Reference (and shapes the assembly does not take, alike for
		// every n): dequantize each weight row once, then one plain dot
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
	if b.gemvFast(t, r0, r1) { // MXFP4 and bf16 weights (mxfp4.go)
		return
	}

	// Weight rows as f32: in place for aligned f32 weights, else
	// dequantized into scratch.
	nr := r1 - r0
	var wbuf []float32
	if w.f32 != nil {
		wbuf = w.f32[r0*k : r1*k]
	} else {
		wbuf = b.scratch[worker].floats(nr * k)
		for r := 0; r < nr; r++ {
			b.dequantRow(w, r0+r, wbuf[r*k:(r+1)*k])
		}
	}
	var out [12]float32
	i := 0
	for ; i+3 <= n; i += 3 {
		x0, x1, x2 := xrow(i), xrow(i+1), xrow(i+2)
		y0, y1, y2 := yrow(i), yrow(i+1), yrow(i+2)
		r := 0
		for ; r+4 <= nr; r += 4 {
			dotF32x4x3(&wbuf[r*k], k, &x0[0], &x1[0], &x2[0], k, &out)
			for q := 0; q < 4; q++ {
				y0[r0+r+q] = out[3*q]
				y1[r0+r+q] = out[3*q+1]
				y2[r0+r+q] = out[3*q+2]
			}
		}
		for ; r < nr; r++ {
			wr := wbuf[r*k : r*k+k]
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
			dotF32x4x1(&wbuf[r*k], k, &x0[0], k, &o4)
			copy(y0[r0+r:r0+r+4], o4[:])
		}
		for ; r < nr; r++ {
			y0[r0+r] = dotF32(&wbuf[r*k], &x0[0], k)
		}
	}
}

// quad returns the codes, scales and biases of weight rows r … r+3; when
// fewer than four rows remain it copies them, zero-padded, into scratch
// (padding rows compute zeros that are dropped).
func (b *Backend) quad(worker int, w *weight, r int) (codes, scales, biases []byte) {
	m := w.m
	rb, sb := m.Format.RowBytes(m.Cols), 2*m.Groups()
	if r+4 <= m.Rows {
		return m.Data[r*rb:], m.Scales[r*sb:], m.Biases[r*sb:]
	}
	s := &b.scratch[worker]
	need := 4*rb + 8*sb
	if cap(s.pad) < need {
		s.pad = make([]byte, need)
	}
	p := s.pad[:need]
	clear(p)
	n := m.Rows - r
	copy(p, m.Data[r*rb:(r+n)*rb])
	copy(p[4*rb:], m.Scales[r*sb:(r+n)*sb])
	copy(p[4*rb+4*sb:], m.Biases[r*sb:(r+n)*sb])
	return p, p[4*rb:], p[4*rb+4*sb:]
}

// gemvQuad computes rows r … r+3 (or fewer) of w for input row i of t.
func (b *Backend) gemvQuad(worker int, t *mmTask, r, i int, out *[4]float32) {
	m := t.w.m
	k, g, gs := m.Cols, m.Groups(), m.Format.GroupSize
	codes, sc, bi := b.quad(worker, t.w, r)
	rb, sb := m.Format.RowBytes(k), 2*g
	xs := t.xsRow(i)
	if t.w.fused == fusedAffine4BF16 {
		gemvA4(&codes[0], rb, &sc[0], &bi[0], sb, g, gs/16, &t.xpRow(i)[0], &xs[0], out)
	} else {
		x := t.xrow(i)
		gemvA8(&codes[0], rb, &sc[0], &bi[0], sb, g, gs/8, &x[0], &xs[0], out)
	}
}

// mmFused computes outputs [r0, r1) of every row of task t for MLX affine
// weights with a fused kernel.
func (b *Backend) mmFused(worker int, t *mmTask, r0, r1 int) {
	m := t.w.m
	k, g, gs := m.Cols, m.Groups(), m.Format.GroupSize
	n := t.n
	yrow := func(i int) []float32 { return row(t.y, t.yt, i) }
	put := func(y []float32, r int, v []float32) {
		if r < r1 {
			copy(y[r:min(r+len(v), r1)], v)
		}
	}
	if n == 1 {
		var out [4]float32
		y := yrow(0)
		for r := r0; r < r1; r += 4 {
			b.gemvQuad(worker, t, r, 0, &out)
			put(y, r, out[:])
		}
		return
	}
	// Unpack the block's codes as float32(q·s) (padded to whole quads)
	// and widen its biases once, interleaving each quad of rows chunk by
	// chunk.
	nr := r1 - r0
	quads := (nr + 3) / 4
	s := &b.scratch[worker]
	qf := s.floats(quads * 4 * k)
	bf := s.auxFloats(quads * 4 * g)
	rb := m.Format.RowBytes(k)
	for q := 0; q < quads; q++ {
		base := qf[q*4*k : (q+1)*4*k]
		for rr := 0; rr < 4; rr++ {
			r := 4*q + rr
			if r >= nr {
				for j := 0; j < k/8; j++ {
					clear(base[(4*j+rr)*8 : (4*j+rr)*8+8])
				}
				for j := 0; j < g; j++ {
					bf[(q*g+j)*4+rr] = 0
				}
				continue
			}
			codes := m.Data[(r0+r)*rb:]
			sc := m.Scales[(r0+r)*2*g:]
			if t.w.fused == fusedAffine4BF16 {
				unpackA4(&base[rr*8], &codes[0], &sc[0], g, gs/16, 4*32)
			} else {
				unpackA8(&base[rr*8], &codes[0], &sc[0], g, gs/8, 4*32)
			}
			bi := m.Biases[(r0+r)*2*g : (r0+r+1)*2*g]
			for j := 0; j < g; j++ {
				bf[(q*g+j)*4+rr] = bf16(bi[2*j:])
			}
		}
	}
	xin := func(i int) []float32 {
		if t.w.fused == fusedAffine4BF16 {
			return t.xpRow(i)
		}
		return t.xrow(i)
	}
	// Triples of input rows over the block, in tiles of input rows and of
	// groups so the operands stay in the L1 and L2 caches; each (quad,
	// triple) keeps its running sums across the group tiles.
	// The last triple is padded with copies of the last row (whose extra
	// results are dropped): the rows share the unpacked block instead of
	// streaming the codes again.
	triples := (n + 2) / 3
	gt := max(1, kTile/gs) // groups per tile
	acc := s.accFloats(quads * triples * 96)
	clear(acc)
	// The input rows of the current tile of triples, looked up once.
	var xr, sr [tokenTile][]float32
	for t0 := 0; t0 < triples; t0 += tokenTile / 3 {
		t1 := min(t0+tokenTile/3, triples)
		for i := 3 * t0; i < 3*t1; i++ {
			j := min(i, n-1)
			xr[i-3*t0], sr[i-3*t0] = xin(j), t.xsRow(j)
		}
		for g0 := 0; g0 < g; g0 += gt {
			ng := min(gt, g-g0)
			xo, so := g0*gs, g0*8
			for q := 0; q < quads; q++ {
				qp, bp := &qf[q*4*k+g0*gs*4], &bf[(q*g+g0)*4]
				for tr := t0; tr < t1; tr++ {
					j := 3 * (tr - t0)
					gemmA4x3(qp, bp, ng, gs/8,
						&xr[j][xo], &xr[j+1][xo], &xr[j+2][xo],
						&sr[j][so], &sr[j+1][so], &sr[j+2][so],
						(*[96]float32)(acc[(q*triples+tr)*96:]))
				}
			}
		}
	}
	var out [12]float32
	for q := 0; q < quads; q++ {
		r := r0 + 4*q
		for tr := 0; tr < triples; tr++ {
			reduceT(&acc[(q*triples+tr)*96], &out[0], 12)
			for c := 0; c < 3 && 3*tr+c < n; c++ {
				y := yrow(3*tr + c)
				for rr := 0; rr < 4 && r+rr < r1; rr++ {
					y[r+rr] = out[3*rr+c]
				}
			}
		}
	}
}

// bf16 decodes the little-endian bf16 at b[0:2].
func bf16(b []byte) float32 { return math.Float32frombits(uint32(b[0])<<16 | uint32(b[1])<<24) }

// dotGo is the plain-Go dot product.
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	for i, v := range a {
		s += v * b[i]
	}
	return s
}
