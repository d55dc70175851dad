package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/stretchr/testify/require"
)

// formats returns a weight of every format the suite covers, rows×cols.
func formats(t *testing.T, r *rand.Rand, rows, cols int) []*quant.Matrix {
	t.Helper()
	w := randVals(r, rows*cols, 1/math.Sqrt(float64(cols)))
	out := []*quant.Matrix{
		quant.FromPlain(quant.F32, w, rows, cols),
		quant.FromPlain(quant.F16, w, rows, cols),
		quant.FromPlain(quant.BF16, w, rows, cols),
	}
	for _, bits := range []int{2, 3, 4, 5, 6, 8} {
		for _, g := range []int{32, 64, 128} {
			for _, st := range []quant.ScaleType{quant.ScaleBF16, quant.ScaleF16, quant.ScaleF32} {
				if st != quant.ScaleBF16 && g != 64 {
					continue // keep the matrix small: other scale types at g64 only
				}
				m, err := quant.QuantizeAffine(w, rows, cols, bits, g, st)
				require.NoError(t, err)
				out = append(out, m)
			}
		}
	}
	m, err := quant.QuantizeMXFP4(w, rows, cols)
	require.NoError(t, err)
	return append(out, m)
}

// dotBound is the tolerance of one output: the f32 rounding of a K-term sum
// in any order is below K·ε·Σ|w·x|.
func dotBounds(m *quant.Matrix, x []float32, n int) []float64 {
	wd := m.Dequantize()
	out := make([]float64, n*m.Rows)
	for i := 0; i < n; i++ {
		for r := 0; r < m.Rows; r++ {
			var s float64
			for k := 0; k < m.Cols; k++ {
				s += math.Abs(float64(wd[r*m.Cols+k]) * float64(x[i*m.Cols+k]))
			}
			out[i*m.Rows+r] = 1e-6 + 2*float64(m.Cols)*6e-8*s
		}
	}
	return out
}

func within(t *testing.T, got, want []float32, bounds []float64, format string, args ...any) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= bounds[i]) {
			require.Failf(t, "mismatch", "%s: element %d = %g, reference %g (|diff| %g > %g)",
				fmt.Sprintf(format, args...), i, got[i], want[i], d, bounds[i])
		}
	}
}

// refProduct returns the reference backend's product of n rows of x (of
// cols values) and the weight wr bound on it (rows outputs).
func (h *harness) refProduct(t *testing.T, wr kernels.Weight, x []float32, n, rows, cols int) []float32 {
	t.Helper()
	want := upload(t, h.ref, kernels.F32, n, rows, make([]float32, n*rows))
	h.ref.MatMul(want, upload(t, h.ref, kernels.F32, n, cols, x), wr)
	return read(t, h.ref, want)
}

// checkBatches multiplies the first k rows of x (k = 1, 2, 3 and n) by w,
// m bound on the backend, and requires each product within bounds of want
// (the reference's for the n rows) and — on a batch-invariant backend —
// every row of a batch equal to that row computed alone, whichever kernel
// a batch size selects.
func (h *harness) checkBatches(t *testing.T, m *quant.Matrix, w kernels.Weight, x, want []float32, bounds []float64, n int) {
	t.Helper()
	rows, cols := m.Rows, m.Cols
	for _, k := range []int{1, 2, 3, n} {
		view, whole := poisoned(t, h.b, k, rows)
		h.b.MatMul(view, upload(t, h.b, kernels.F32, k, cols, x[:k*cols]), w)
		require.NoError(t, h.b.Sync())
		got := readChecked(t, h.b, view, whole, "MatMul "+m.Format.String())
		within(t, got, want[:k*rows], bounds[:k*rows], "MatMul %s %d×%d, %d rows", m.Format, rows, cols, k)
		if h.b.Capabilities().Has(kernels.OpBatchInvariant) {
			for i := 0; i < k; i++ {
				one := upload(t, h.b, kernels.F32, 1, rows, make([]float32, rows))
				h.b.MatMul(one, upload(t, h.b, kernels.F32, 1, cols, x[i*cols:(i+1)*cols]), w)
				require.Equal(t, got[i*rows:(i+1)*rows], read(t, h.b, one), "%s: row %d of %d differs alone", m.Format, i, k)
			}
		}
	}
}

func (h *harness) testMatMul(t *testing.T) {
	r := rng(2)
	caps := h.b.Capabilities()
	const rows, cols = 37, 256
	for _, m := range formats(t, r, rows, cols) {
		if !caps.Supports(m.Format) {
			t.Logf("%s: %s not supported, skipped", h.b.Name(), m.Format)
			continue
		}
		t.Run(m.Format.String(), func(t *testing.T) {
			w, err := h.b.Bind(m)
			require.NoError(t, err)
			wr, err := h.ref.Bind(m)
			require.NoError(t, err)
			for _, n := range []int{1, 2, 3, 4, 7} {
				x := randVals(r, n*cols, 1)
				want := h.refProduct(t, wr, x, n, rows, cols)

				view, whole := poisoned(t, h.b, n, rows)
				h.b.MatMul(view, upload(t, h.b, kernels.F32, n, cols, x), w)
				require.NoError(t, h.b.Sync())
				got := readChecked(t, h.b, view, whole, "MatMul")
				within(t, got, want, dotBounds(m, x, n), "MatMul %s n=%d", m.Format, n)

				if caps.Has(kernels.OpBatchInvariant) && n > 1 {
					// Each row alone must give the very same bits.
					for i := 0; i < n; i++ {
						one := upload(t, h.b, kernels.F32, 1, rows, make([]float32, rows))
						h.b.MatMul(one, upload(t, h.b, kernels.F32, 1, cols, x[i*cols:(i+1)*cols]), w)
						require.Equal(t, got[i*rows:(i+1)*rows], read(t, h.b, one),
							"%s advertises batch invariance but row %d of %d differs when run alone (%s)", h.b.Name(), i, n, m.Format)
					}
				}
			}
		})
	}
	// Larger shapes exercise the parallel paths.
	for _, shape := range [][3]int{{300, 512, 1}, {300, 512, 9}, {129, 1024, 5}, {64, 256, 47}, {37, 128, 64}} {
		rows, cols, n := shape[0], shape[1], shape[2]
		m, err := quant.QuantizeAffine(randVals(r, rows*cols, 0.05), rows, cols, 4, 64, quant.ScaleBF16)
		require.NoError(t, err)
		if !caps.Supports(m.Format) {
			continue
		}
		w, err := h.b.Bind(m)
		require.NoError(t, err)
		wr, err := h.ref.Bind(m)
		require.NoError(t, err)
		x := randVals(r, n*cols, 1)
		want := h.refProduct(t, wr, x, n, rows, cols)
		view, whole := poisoned(t, h.b, n, rows)
		h.b.MatMul(view, upload(t, h.b, kernels.F32, n, cols, x), w)
		got := readChecked(t, h.b, view, whole, "MatMul")
		within(t, got, want, dotBounds(m, x, n), "MatMul %d×%d n=%d", rows, cols, n)
	}
}

func (h *harness) testMatMulMulti(t *testing.T) {
	r := rng(13)
	const cols, n = 128, 5
	x := randVals(r, n*cols, 1)
	var ms []*quant.Matrix
	var ws []kernels.Weight
	for i, rows := range []int{24, 8, 8} {
		m, err := quant.QuantizeAffine(randVals(r, rows*cols, 0.1), rows, cols, 4, 64, quant.ScaleBF16)
		require.NoError(t, err)
		if i == 2 {
			m = quant.FromPlain(quant.BF16, randVals(r, rows*cols, 0.1), rows, cols)
		}
		w, err := h.b.Bind(m)
		require.NoError(t, err)
		ms, ws = append(ms, m), append(ws, w)
	}
	xt := upload(t, h.b, kernels.F32, n, cols, x)
	var views, wholes []kernels.Tensor
	for _, m := range ms {
		v, w := poisoned(t, h.b, n, m.Rows)
		views, wholes = append(views, v), append(wholes, w)
	}
	kernels.MatMulMulti(h.b, views, xt, ws)
	require.NoError(t, h.b.Sync())
	for i, m := range ms {
		got := readChecked(t, h.b, views[i], wholes[i], "MatMulMulti")
		one := upload(t, h.b, kernels.F32, n, m.Rows, make([]float32, n*m.Rows))
		h.b.MatMul(one, xt, ws[i])
		want := read(t, h.b, one)
		if h.b.Capabilities().Has(kernels.OpBatchInvariant) {
			require.Equal(t, want, got, "MatMulMulti output %d differs from MatMul", i)
		} else {
			within(t, got, want, dotBounds(m, x, n), "MatMulMulti output %d", i)
		}
	}
}

func (h *harness) testMatMulGrouped(t *testing.T) {
	r := rng(3)
	const rows, cols, tokens = 24, 128, 7
	var ms []*quant.Matrix
	var ws, wrs []kernels.Weight
	for e := 0; e < 5; e++ {
		m, err := quant.QuantizeAffine(randVals(r, rows*cols, 0.1), rows, cols, 4, 32, quant.ScaleBF16)
		require.NoError(t, err)
		w, err := h.b.Bind(m)
		if err != nil {
			t.Skipf("%s cannot bind %s: %v", h.b.Name(), m.Format, err)
		}
		wr, err := h.ref.Bind(m)
		require.NoError(t, err)
		ms, ws, wrs = append(ms, m), append(ws, w), append(wrs, wr)
	}
	offs := []int{0, 3, 3, 4, 9, 11}                     // expert 1 has no rows
	slotRows := []int32{0, 3, 6, 1, 2, 3, 4, 5, 6, 0, 5} // slot → input row
	n := offs[len(offs)-1]
	x := randVals(r, tokens*cols, 1)
	gathered := make([]float32, 0, n*cols)
	for _, tk := range slotRows {
		gathered = append(gathered, x[int(tk)*cols:int(tk+1)*cols]...)
	}
	wantT := upload(t, h.ref, kernels.F32, n, rows, make([]float32, n*rows))
	xr := upload(t, h.ref, kernels.F32, n, cols, gathered)
	for g := range wrs {
		if offs[g] < offs[g+1] {
			h.ref.MatMul(wantT.RowRange(offs[g], offs[g+1]), xr.RowRange(offs[g], offs[g+1]), wrs[g])
		}
	}
	want := read(t, h.ref, wantT)
	var bounds []float64
	for g, m := range ms {
		bounds = append(bounds, dotBounds(m, gathered[offs[g]*cols:offs[g+1]*cols], offs[g+1]-offs[g])...)
	}
	scratch := func(k int) (kernels.Tensor, error) { return h.b.Alloc(kernels.F32, k, cols) }

	// Through the row index, and on pre-gathered rows.
	for _, indexed := range []bool{true, false} {
		view, whole := poisoned(t, h.b, n, rows)
		var err error
		if indexed {
			err = kernels.MatMulGrouped(h.b, view, upload(t, h.b, kernels.F32, tokens, cols, x), slotRows, ws, offs, scratch)
		} else {
			err = kernels.MatMulGrouped(h.b, view, upload(t, h.b, kernels.F32, n, cols, gathered), nil, ws, offs, scratch)
		}
		require.NoError(t, err)
		require.NoError(t, h.b.Sync())
		got := readChecked(t, h.b, view, whole, "MatMulGrouped")
		within(t, got, want, bounds, "MatMulGrouped (indexed %v)", indexed)
		if h.b.Capabilities().Has(kernels.OpBatchInvariant) {
			// Grouped rows equal the plain product of each group.
			for g, w := range ws {
				a, e := offs[g], offs[g+1]
				if a == e {
					continue
				}
				one := upload(t, h.b, kernels.F32, e-a, rows, make([]float32, (e-a)*rows))
				h.b.MatMul(one, upload(t, h.b, kernels.F32, e-a, cols, gathered[a*cols:e*cols]), w)
				require.Equal(t, got[a*rows:e*rows], read(t, h.b, one), "group %d differs from MatMul", g)
			}
		}
	}
	// A bad row index is reported.
	if g, ok := h.b.(kernels.GroupedMatMuler); ok {
		bad := append([]int32(nil), slotRows...)
		bad[4] = tokens
		g.MatMulGrouped(upload(t, h.b, kernels.F32, n, rows, make([]float32, n*rows)), upload(t, h.b, kernels.F32, tokens, cols, x), bad, ws, offs)
		require.Error(t, h.b.Sync(), "row index beyond the input")
	}
}

func (h *harness) testEmbed(t *testing.T) {
	r := rng(4)
	const rows, cols = 50, 128
	ids := []int32{0, 49, 7, 7, 23}
	for _, m := range formats(t, r, rows, cols) {
		if !h.b.Capabilities().Supports(m.Format) {
			continue
		}
		w, err := h.b.Bind(m)
		require.NoError(t, err)
		view, whole := poisoned(t, h.b, len(ids), cols)
		h.b.Embed(view, w, ids)
		got := readChecked(t, h.b, view, whole, "Embed "+m.Format.String())
		want := make([]float32, 0, len(ids)*cols)
		row := make([]float32, cols)
		for _, id := range ids {
			m.DequantRow(int(id), row)
			want = append(want, row...)
		}
		// Embedding rows are the dequantized values, exactly.
		require.Equal(t, want, got, "Embed %s", m.Format)
	}
}
