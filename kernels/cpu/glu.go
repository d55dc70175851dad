package cpu

import "github.com/maniac-ai/mach/kernels"

var _ kernels.InterleavedActivator = (*Backend)(nil)

// ActivateInterleaved implements kernels.InterleavedActivator with the
// same elementwise function as Activate.
func (b *Backend) ActivateInterleaved(dst, gu kernels.Tensor, a kernels.Activation) {
	d, err1 := f32Of(dst)
	s, err2 := f32Of(gu)
	if err := firstErr(err1, err2); err != nil {
		b.fail("activate_interleaved", err)
		return
	}
	if gu.Rows != dst.Rows || gu.Cols != 2*dst.Cols {
		b.failf("activate_interleaved", "gate/up %v for output %v", gu, dst)
		return
	}
	f, err := activation(a)
	if err != nil {
		b.fail("activate_interleaved", err)
		return
	}
	b.forRows(dst.Rows, gu.Cols, func(_, i int) {
		dr, pr := row(d, dst, i), row(s, gu, i)
		for j := range dr {
			dr[j] = f(pr[2*j], pr[2*j+1])
		}
	})
}
