package kerneltest

import (
	"math/rand/v2"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/stretchr/testify/require"
)

// randomMXFP4 returns rows×cols MXFP4 weights with every code and scale
// bytes over a wide range, some rows in the subnormal range (scale bytes
// 0–3), which must decode exactly too.
func randomMXFP4(r *rand.Rand, rows, cols int) *quant.Matrix {
	m := &quant.Matrix{Format: quant.Format{Kind: quant.MXFP4, Bits: 4, GroupSize: 32, Scale: quant.ScaleE8M0},
		Rows: rows, Cols: cols, Data: make([]byte, rows*cols/2), Scales: make([]byte, rows*cols/32)}
	for i := range m.Data {
		m.Data[i] = byte(r.Uint32())
	}
	g := cols / 32
	for row := 0; row < rows; row++ {
		for j := 0; j < g; j++ {
			s := 110 + r.IntN(24)
			if row%7 == 3 {
				s = r.IntN(4)
			}
			m.Scales[row*g+j] = byte(s)
		}
	}
	return m
}

// testMatMulWide checks MXFP4 and bf16 products at gpt-oss's widths (2880
// = 90 groups of 32) with row counts that leave partial blocks, as plain
// and grouped products: against the reference within the f32 bound, and
// (for batch-invariant backends) with every row of a batch equal to that
// row computed alone, whichever kernel a batch size selects.
func (h *harness) testMatMulWide(t *testing.T) {
	r := rng(31)
	caps := h.b.Capabilities()
	const cols = 2880
	for _, rows := range []int{131, 2 * 64} {
		w := randVals(r, rows*cols, 0.02)
		for _, m := range []*quant.Matrix{randomMXFP4(r, rows, cols), quant.FromPlain(quant.BF16, w, rows, cols)} {
			if !caps.Supports(m.Format) {
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
			// Grouped: the same weight as two experts over an index.
			hr := rows / 2
			half := m.RowRange(0, hr)
			hw, err := h.b.Bind(half)
			require.NoError(t, err)
			rowsIdx := []int32{4, 0, 2, 3, 1, 1, 0}
			offs := []int{0, 1, 7}
			dst := upload(t, h.b, kernels.F32, len(rowsIdx), hr, make([]float32, len(rowsIdx)*hr))
			scratch := func(k int) (kernels.Tensor, error) { return h.b.Alloc(kernels.F32, k, cols) }
			require.NoError(t, kernels.MatMulGrouped(h.b, dst, upload(t, h.b, kernels.F32, n, cols, x), rowsIdx, []kernels.Weight{hw, hw}, offs, scratch))
			got := read(t, h.b, dst)
			for s, tk := range rowsIdx {
				for j := 0; j < hr; j++ {
					e := got[s*hr+j] - want[int(tk)*rows+j]
					require.LessOrEqual(t, float64(max(e, -e)), bounds[int(tk)*rows+j], "grouped %s slot %d output %d", m.Format, s, j)
				}
			}
		}
	}
}
