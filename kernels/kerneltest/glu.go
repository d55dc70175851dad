package kerneltest

import (
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/stretchr/testify/require"
)

// hidden hides a backend's optional interfaces, so the package-level
// functions take their composed fallbacks.
type hidden struct{ kernels.Backend }

// testActivateInterleaved checks the gated activation over interleaved
// gate/up columns (gpt-oss experts), native and composed, against Activate
// on the de-interleaved halves.
func (h *harness) testActivateInterleaved(t *testing.T) {
	r := rng(21)
	const rows, cols = 7, 48
	gu := randVals(r, rows*2*cols, 5) // beyond the clamp limit, too
	g, u := make([]float32, rows*cols), make([]float32, rows*cols)
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			g[i*cols+j], u[i*cols+j] = gu[i*2*cols+2*j], gu[i*2*cols+2*j+1]
		}
	}
	acts := map[string]kernels.Activation{
		"silu":         {Kind: kernels.SiLU},
		"silu_limited": {Kind: kernels.SiLULimited, Alpha: 1.702, Limit: 7, UpOffset: 1},
	}
	for name, a := range acts {
		if a.Kind == kernels.SiLULimited && !h.b.Capabilities().Has(kernels.OpSiLULimited) {
			continue
		}
		wantT := upload(t, h.ref, kernels.F32, rows, cols, make([]float32, rows*cols))
		h.ref.Activate(wantT, upload(t, h.ref, kernels.F32, rows, cols, g), upload(t, h.ref, kernels.F32, rows, cols, u), a)
		want := read(t, h.ref, wantT)

		if ia, ok := h.b.(kernels.InterleavedActivator); ok {
			view, whole := poisoned(t, h.b, rows, cols)
			ia.ActivateInterleaved(view, upload(t, h.b, kernels.F32, rows, 2*cols, gu), a)
			require.NoError(t, h.b.Sync())
			closeTo(t, readChecked(t, h.b, view, whole, "ActivateInterleaved "+name), want, 1e-6, 1e-5, "ActivateInterleaved %s", name)
		}
		dst := upload(t, h.b, kernels.F32, rows, cols, nanVals(rows*cols))
		require.NoError(t, kernels.ActivateInterleaved(hidden{h.b}, dst, upload(t, h.b, kernels.F32, rows, 2*cols, gu), a))
		require.NoError(t, h.b.Sync())
		closeTo(t, read(t, h.b, dst), want, 1e-6, 1e-5, "ActivateInterleaved %s (composed)", name)
	}
	// The composed path refuses views it cannot reshape.
	x := upload(t, h.b, kernels.F32, rows, 2*cols+2, make([]float32, rows*(2*cols+2)))
	dst := upload(t, h.b, kernels.F32, rows, cols, make([]float32, rows*cols))
	require.Error(t, kernels.ActivateInterleaved(hidden{h.b}, dst, x.ColRange(0, 2*cols), kernels.Activation{Kind: kernels.SiLU}))
}
