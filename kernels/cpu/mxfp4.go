package cpu

import (
	"github.com/maniac-ai/mach/pkg/quant"
)

// Fast paths for MXFP4 (gpt-oss experts, MLX mxfp4) and bf16 weights (the
// attention and head of gpt-oss and most Hugging Face checkpoints). They
// decode weights exactly and keep the canonical order of simd_amd64.s, so
// they give the same bits as the generic path (a row decoded to f32, then
// dotF32*) and as each other: a fused product for decoding-sized batches,
// an assembly decoder feeding the f32 kernels for larger ones.

// mxHalf[e] is half the E8M0 scale 2^(e-127): the decoders produce the
// integers 2·e2m1(code), and float(2·e2m1)·(s/2) = e2m1·s exactly (both are
// small integers times powers of two, subnormals included).
var mxHalf = func() (t [256]float32) {
	for e := range t {
		t[e] = quant.E8M0ToF32(uint8(e)) * 0.5
	}
	return t
}()

// mxfp4Fast: MXFP4 in groups of 32, the only group size gpt-oss and MLX's
// mxfp4 mode use.
func mxfp4Fast(f quant.Format) bool { return f.Kind == quant.MXFP4 && f.GroupSize == 32 }

// bf16Fast: bf16 rows of whole 8-lane chunks.
func bf16Fast(f quant.Format, cols int) bool { return f.Kind == quant.BF16 && cols%8 == 0 }

// dequantFast decodes row r of m into dst with the assembly decoders when
// the format has one, and reports whether it did.
func dequantFast(m *quant.Matrix, r int, dst []float32) bool {
	f := m.Format
	switch {
	case mxfp4Fast(f):
		rb, g := f.RowBytes(m.Cols), m.Cols/32
		dequantMX4(&dst[0], &m.Data[r*rb], &m.Scales[r*g], g, &mxHalf[0])
		return true
	case bf16Fast(f, m.Cols):
		dequantBF16(&dst[0], &m.Data[2*r*m.Cols], m.Cols)
		return true
	}
	return false
}

// gemvFast computes outputs [r0, r1) of task t with the fused MXFP4 or
// bf16 products when the task has at most two input rows, and reports
// whether it did. Larger batches decode each weight row once for all input
// rows instead (mmRows); the results are the same bits either way.
func (b *Backend) gemvFast(t *mmTask, r0, r1 int) bool {
	m := t.w.m
	f := m.Format
	mx, bf := mxfp4Fast(f), bf16Fast(f, m.Cols)
	if t.n > 2 || (!mx && !bf) {
		return false
	}
	k := m.Cols
	rb := f.RowBytes(k)
	g := k / 32
	var out [4]float32
	// quad computes rows r … r+3, or row r alone (strides 0 repeat it).
	quad := func(r int, x []float32, one bool) {
		stride, sstride := rb, g
		if one {
			stride, sstride = 0, 0
		}
		if mx {
			gemvMX4(&m.Data[r*rb], stride, &m.Scales[r*g], sstride, g, &mxHalf[0], &x[0], &out)
		} else {
			gemvBF16(&m.Data[r*rb], stride/2, &x[0], k, &out)
		}
	}
	for i := 0; i < t.n; i++ {
		x, y := t.xrow(i), row(t.y, t.yt, i)
		r := r0
		for ; r+4 <= r1; r += 4 {
			quad(r, x, false)
			copy(y[r:r+4], out[:])
		}
		for ; r < r1; r++ {
			quad(r, x, true)
			y[r] = out[0]
		}
	}
	return true
}
