//go:build !amd64 || noasm

package cpu

// Without the assembly kernels the backend always takes the plain-Go
// paths; these stand-ins are never called.

var haveSIMD = false

func dotF32(a, b *float32, k int) float32 { panic("cpu: no SIMD") }

func dotF32x4x1(w *float32, ldw int, x *float32, k int, out *[4]float32) { panic("cpu: no SIMD") }

func dotF32x4x3(w *float32, ldw int, x0, x1, x2 *float32, k int, out *[12]float32) {
	panic("cpu: no SIMD")
}

func dequantAffine4BF16(dst *float32, codes, scales, biases *byte, groups, chunks int) {
	panic("cpu: no SIMD")
}

func dequantAffine8BF16(dst *float32, codes, scales, biases *byte, groups, chunks int) {
	panic("cpu: no SIMD")
}

func gemvAffine4BF16x4(codes *byte, rowBytes int, scales, biases *byte, scaleRowBytes, groups, chunks int, x *float32, out *[4]float32) {
	panic("cpu: no SIMD")
}

func gemvAffine8BF16x4(codes *byte, rowBytes int, scales, biases *byte, scaleRowBytes, groups, chunks int, x *float32, out *[4]float32) {
	panic("cpu: no SIMD")
}

func axpyF32(dst *float32, a float32, x *float32, k int) { panic("cpu: no SIMD") }

func cvtF16(dst *float32, src *uint16, k int) { panic("cpu: no SIMD") }
