//go:build amd64 && !noasm

package cpu

import "golang.org/x/sys/cpu"

// Every AVX2 processor also has F16C (used by cvtF16).
var haveSIMD = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// Implemented in simd_amd64.s. Lengths k are multiples of 8.

//go:noescape
func dotF32(a, b *float32, k int) float32

//go:noescape
func dotF32x4x1(w *float32, ldw int, x *float32, k int, out *[4]float32)

//go:noescape
func dotF32x4x3(w *float32, ldw int, x0, x1, x2 *float32, k int, out *[12]float32)

//go:noescape
func axpyF32(dst *float32, a float32, x *float32, k int)

//go:noescape
func cvtF16(dst *float32, src *uint16, k int)

//go:noescape
func prepX4(xp, xs, x *float32, groups, blocks int)

//go:noescape
func prepX8(xs, x *float32, groups, chunks int)

//go:noescape
func gemvA4(codes *byte, rowBytes int, scales, biases *byte, scaleRowBytes, groups, blocks int, xp, xs *float32, out *[4]float32)

//go:noescape
func gemvA8(codes *byte, rowBytes int, scales, biases *byte, scaleRowBytes, groups, chunks int, x, xs *float32, out *[4]float32)

//go:noescape
func unpackA4(dst *float32, codes, scales *byte, groups, blocks, stride int)

//go:noescape
func unpackA8(dst *float32, codes, scales *byte, groups, chunks, stride int)

//go:noescape
func gemmA4x3(q *float32, b *float32, groups, chunks int, x0, x1, x2, xs0, xs1, xs2 *float32, t *[96]float32)

//go:noescape
func reduceT(t *float32, out *float32, n int)

//go:noescape
func axpy8(o *float32, p *float32, v *float32, ldv, k int)

//go:noescape
func expShift(dst, src *float32, m float32, n int) float32

//go:noescape
func siluMul(dst, gate, up *float32, n int)
