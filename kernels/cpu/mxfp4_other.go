//go:build !amd64 || noasm

package cpu

// Without the assembly haveSIMD is false and these are never called.

func gemvMX4(codes *byte, rowBytes int, scales *byte, scaleRowBytes, groups int, half *float32, x *float32, out *[4]float32) {
	noSIMD()
}

func dequantMX4(dst *float32, codes *byte, scales *byte, groups int, half *float32) { noSIMD() }

func gemvBF16(w *byte, ldw int, x *float32, k int, out *[4]float32) { noSIMD() }

func dequantBF16(dst *float32, src *byte, k int) { noSIMD() }
