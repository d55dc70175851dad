package kerneltest

import (
	"math/rand/v2"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/stretchr/testify/require"
)

// randomFP8 returns rows×cols FP8 weights in DeepSeek's checkpoint form
// (every finite E4M3 code, 128×128 tiles with E8M0 or f32 scales over a
// wide range, partial tiles when the shape is not a multiple of 128).
func randomFP8(t *testing.T, r *rand.Rand, rows, cols int, st quant.ScaleType) *quant.Matrix {
	codes := make([]byte, rows*cols)
	for i := range codes {
		c := byte(r.Uint32())
		if c&0x7f == 0x7f { // NaN codes never appear in a checkpoint
			c &^= 1
		}
		codes[i] = c
	}
	tr, tc := (rows+127)/128, (cols+127)/128
	e := make([]byte, tr*tc)
	for i := range e {
		e[i] = byte(105 + r.IntN(20))
	}
	scales := e
	if st == quant.ScaleF32 {
		f := make([]float32, len(e))
		for i, b := range e {
			f[i] = quant.E8M0ToF32(b) * float32(1+r.Float64())
		}
		scales = quant.F32Bytes(f)
	}
	m, err := quant.FromBlockScaled(codes, rows, cols, scales, st, 128, 128)
	require.NoError(t, err)
	return m
}

// testMatMulFP8 checks FP8 products (DeepSeek-V4's attention and shared
// experts) at DeepSeek's widths and at partial tiles, plain and grouped:
// against the reference within the f32 bound and, for batch-invariant
// backends, with every row of a batch equal to that row alone. A row range
// starting inside a tile (the groups of the grouped output projection)
// must keep its tile's scales.
func (h *harness) testMatMulFP8(t *testing.T) {
	r := rng(41)
	caps := h.b.Capabilities()
	for _, sh := range [][2]int{{131, 1024}, {64, 200}, {300, 256}} {
		rows, cols := sh[0], sh[1]
		for _, st := range []quant.ScaleType{quant.ScaleE8M0, quant.ScaleF32} {
			m := randomFP8(t, r, rows, cols, st)
			if !caps.Supports(m.Format) {
				t.Logf("%s: %s not supported, skipped", h.b.Name(), m.Format)
				continue
			}
			bw, err := h.b.Bind(m)
			require.NoError(t, err)
			rw, err := h.ref.Bind(m)
			require.NoError(t, err)
			const n = 5
			x := randVals(r, n*cols, 1)
			want := h.refProduct(t, rw, x, n, rows, cols)
			bounds := dotBounds(m, x, n)
			h.checkBatches(t, m, bw, x, want, bounds, n)
			// Rows [a, e) starting inside a tile, bound on their own.
			a, e := rows/3, rows-7
			part := m.RowRange(a, e)
			pw, err := h.b.Bind(part)
			require.NoError(t, err)
			dst := upload(t, h.b, kernels.F32, n, e-a, make([]float32, n*(e-a)))
			h.b.MatMul(dst, upload(t, h.b, kernels.F32, n, cols, x), pw)
			got := read(t, h.b, dst)
			for i := 0; i < n; i++ {
				for j := 0; j < e-a; j++ {
					d := got[i*(e-a)+j] - want[i*rows+a+j]
					require.LessOrEqual(t, float64(max(d, -d)), bounds[i*rows+a+j], "%s rows [%d,%d) output (%d,%d)", m.Format, a, e, i, j)
				}
			}
			// Grouped: the two halves as two experts over an index.
			hr := rows / 2
			ws := []kernels.Weight{}
			for _, mm := range []*quant.Matrix{m.RowRange(0, hr), m.RowRange(hr, 2*hr)} {
				w, err := h.b.Bind(mm)
				require.NoError(t, err)
				ws = append(ws, w)
			}
			rowsIdx := []int32{4, 0, 2, 3, 1, 1, 0}
			offs := []int{0, 3, 7}
			gd := upload(t, h.b, kernels.F32, len(rowsIdx), hr, make([]float32, len(rowsIdx)*hr))
			scratch := func(k int) (kernels.Tensor, error) { return h.b.Alloc(kernels.F32, k, cols) }
			require.NoError(t, kernels.MatMulGrouped(h.b, gd, upload(t, h.b, kernels.F32, n, cols, x), rowsIdx, ws, offs, scratch))
			got = read(t, h.b, gd)
			for s, tk := range rowsIdx {
				base := 0
				if s >= offs[1] {
					base = hr
				}
				for j := 0; j < hr; j++ {
					d := got[s*hr+j] - want[int(tk)*rows+base+j]
					require.LessOrEqual(t, float64(max(d, -d)), bounds[int(tk)*rows+base+j], "grouped %s slot %d output %d", m.Format, s, j)
				}
			}
		}
	}
}
