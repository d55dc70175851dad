// Package kerneltest is the conformance suite every compute backend runs:
// each operation is checked against the CPU backend's plain-Go reference on
// random inputs, with tolerances that depend on the operation and element
// types, and every output buffer is poisoned with NaN first so an output
// element a backend forgets to write fails the test, as does a write
// outside the view. A backend's own test calls TestBackend:
//
//	func TestConformance(t *testing.T) {
//		b := mybackend.New(…)
//		defer b.Close()
//		kerneltest.TestBackend(t, b)
//	}
package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/stretchr/testify/require"
)

// TestBackend runs the whole suite against b.
func TestBackend(t *testing.T, b kernels.Backend) {
	ref := cpu.New(cpu.Options{Reference: true, Threads: 1})
	t.Cleanup(func() { _ = ref.Close() })
	h := &harness{b: b, ref: ref}
	t.Run("Buffers", h.testBuffers)
	t.Run("MatMul", h.testMatMul)
	t.Run("MatMulMulti", h.testMatMulMulti)
	t.Run("MatMulGrouped", h.testMatMulGrouped)
	t.Run("MatMulWide", h.testMatMulWide)
	t.Run("MatMulFP8", h.testMatMulFP8)
	t.Run("Embed", h.testEmbed)
	t.Run("RMSNorm", h.testRMSNorm)
	t.Run("RoPE", h.testRoPE)
	t.Run("Attention", h.testAttention)
	t.Run("SparseAttention", h.testSparseAttention)
	t.Run("Activate", h.testActivate)
	t.Run("ActivateInterleaved", h.testActivateInterleaved)
	t.Run("Elementwise", h.testElementwise)
	t.Run("Copy", h.testCopy)
	t.Run("GatherScatter", h.testGatherScatter)
	t.Run("Route", h.testRoute)
	t.Run("LinearAttention", h.testLinearAttention)
	t.Run("Errors", h.testErrors)
}

type harness struct {
	b, ref kernels.Backend
}

func rng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6d616368)) }

func randVals(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

// upload allocates a rows×cols tensor of dt on be holding vals.
func upload(t *testing.T, be kernels.Backend, dt kernels.DType, rows, cols int, vals []float32) kernels.Tensor {
	t.Helper()
	x, err := be.Alloc(dt, rows, cols)
	require.NoError(t, err, "%s: Alloc(%s, %d, %d)", be.Name(), dt, rows, cols)
	require.NoError(t, be.Write(x, vals), "%s: Write", be.Name())
	return x
}

// poisoned allocates an output of rows×cols inside a larger buffer whose
// every element is NaN: one spare row before, two spare columns per row
// (a strided view), one spare row after.
func poisoned(t *testing.T, be kernels.Backend, rows, cols int) (view, whole kernels.Tensor) {
	t.Helper()
	whole = upload(t, be, kernels.F32, rows+2, cols+2, nanVals((rows+2)*(cols+2)))
	view = whole.RowRange(1, rows+1).ColRange(1, cols+1)
	return view, whole
}

func nanVals(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return v
}

// readChecked reads the view out of a poisoned buffer, failing when an
// element inside is still NaN (unwritten) or one outside changed.
func readChecked(t *testing.T, be kernels.Backend, view, whole kernels.Tensor, what string) []float32 {
	t.Helper()
	all := make([]float32, whole.Elems())
	require.NoError(t, be.Read(all, whole), "%s: %s", be.Name(), what)
	out := make([]float32, 0, view.Elems())
	for r := 0; r < whole.Rows; r++ {
		for c := 0; c < whole.Cols; c++ {
			v := all[r*whole.Cols+c]
			inside := r >= 1 && r <= view.Rows && c >= 1 && c <= view.Cols
			if inside {
				require.False(t, math.IsNaN(float64(v)), "%s: %s left output (%d,%d) unwritten", be.Name(), what, r-1, c-1)
				out = append(out, v)
			} else {
				require.True(t, math.IsNaN(float64(v)), "%s: %s wrote outside its output view at (%d,%d)", be.Name(), what, r-1, c-1)
			}
		}
	}
	return out
}

func read(t *testing.T, be kernels.Backend, x kernels.Tensor) []float32 {
	t.Helper()
	out := make([]float32, x.Elems())
	require.NoError(t, be.Read(out, x), "%s: Read", be.Name())
	return out
}

// closeTo fails when |got-want| > atol + rtol·|want| anywhere.
func closeTo(t *testing.T, got, want []float32, atol, rtol float64, format string, args ...any) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if d > atol+rtol*math.Abs(float64(want[i])) || math.IsNaN(float64(got[i])) != math.IsNaN(float64(want[i])) {
			require.Failf(t, "mismatch", "%s: element %d = %g, reference %g (|diff| %g, allowed %g)",
				fmt.Sprintf(format, args...), i, got[i], want[i], d, atol+rtol*math.Abs(float64(want[i])))
		}
	}
}

func (h *harness) testBuffers(t *testing.T) {
	r := rng(1)
	vals := randVals(r, 6*10, 3)
	for _, dt := range []kernels.DType{kernels.F32, kernels.F16, kernels.BF16} {
		x := upload(t, h.b, dt, 6, 10, vals)
		want := read(t, h.ref, upload(t, h.ref, dt, 6, 10, vals))
		require.Equal(t, want, read(t, h.b, x), "%s round trip", dt)
		// Views read and write only their elements.
		sub := x.RowRange(2, 4).ColRange(3, 7)
		require.NoError(t, h.b.Write(sub, make([]float32, 8)))
		got := read(t, h.b, x)
		for i := 0; i < 6; i++ {
			for j := 0; j < 10; j++ {
				if i >= 2 && i < 4 && j >= 3 && j < 7 {
					require.Zero(t, got[i*10+j], "%s view write (%d,%d)", dt, i, j)
				} else {
					require.Equal(t, want[i*10+j], got[i*10+j], "%s outside the view (%d,%d)", dt, i, j)
				}
			}
		}
	}
}
