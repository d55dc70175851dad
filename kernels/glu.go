package kernels

import "fmt"

// InterleavedActivator is implemented by backends that apply a gated
// activation to a fused gate/up tensor whose columns alternate gate and up
// (gpt-oss's experts store gate_up rows interleaved, even = gate), so that
// such weights are used as stored, with no reordering at load.
type InterleavedActivator interface {
	// ActivateInterleaved writes act(gu[i][2j])·gu[i][2j+1] into
	// dst[i][j]; gu is rows × 2·dst.Cols (f32).
	ActivateInterleaved(dst, gu Tensor, a Activation)
}

// ActivateInterleaved runs the interleaved gated activation on b. Without
// a native one it views gu's even and odd columns as column tensors of
// stride 2 and runs Activate on them, which needs gu and dst contiguous.
func ActivateInterleaved(b Backend, dst, gu Tensor, a Activation) error {
	if ia, ok := b.(InterleavedActivator); ok {
		ia.ActivateInterleaved(dst, gu, a)
		return nil
	}
	if gu.Rows != dst.Rows || gu.Cols != 2*dst.Cols || !gu.Contiguous() || !dst.Contiguous() {
		return fmt.Errorf("activate interleaved: gate/up %v for output %v (both contiguous, gate/up twice as wide)", gu, dst)
	}
	n := dst.Rows * dst.Cols
	pairs := gu.Reshape(n, 2)
	b.Activate(dst.Reshape(n, 1), pairs.ColRange(0, 1), pairs.ColRange(1, 2), a)
	return nil
}
