//go:build !amd64 || noasm

package cpu

// Without the assembly kernels the backend always takes the plain-Go
// paths; these stand-ins are never called.

var haveSIMD = false

func noSIMD() { panic("cpu: assembly kernel called without SIMD support") }

func dotF32(a, b *float32, k int) float32 { noSIMD(); return 0 }

func dotF32x4x1(w *float32, ldw int, x *float32, k int, out *[4]float32) { noSIMD() }

func dotF32x4x3(w *float32, ldw int, x0, x1, x2 *float32, k int, out *[12]float32) { noSIMD() }

func axpyF32(dst *float32, a float32, x *float32, k int) { noSIMD() }

func cvtF16(dst *float32, src *uint16, k int) { noSIMD() }

func prepX4(xp, xs, x *float32, groups, blocks int) { noSIMD() }

func prepX8(xs, x *float32, groups, chunks int) { noSIMD() }

func gemvA4(codes *byte, rowBytes int, scales, biases *byte, scaleRowBytes, groups, blocks int, xp, xs *float32, out *[4]float32) {
	noSIMD()
}

func gemvA8(codes *byte, rowBytes int, scales, biases *byte, scaleRowBytes, groups, chunks int, x, xs *float32, out *[4]float32) {
	noSIMD()
}

func unpackA4(dst *float32, codes, scales *byte, groups, blocks, stride int) { noSIMD() }

func unpackA8(dst *float32, codes, scales *byte, groups, chunks, stride int) { noSIMD() }

func gemmA4x3(q *float32, b *float32, groups, chunks int, x0, x1, x2, xs0, xs1, xs2 *float32, t *[96]float32) {
	noSIMD()
}

func reduceT(t *float32, out *float32, n int) { noSIMD() }

func axpy8(o *float32, p *float32, v *float32, ldv, k int) { noSIMD() }

func expShift(dst, src *float32, m float32, n int) float32 { noSIMD(); return 0 }

func siluMul(dst, gate, up *float32, n int) { noSIMD() }
