//go:build amd64 && !noasm

package cpu

// Implemented in gdn_amd64.s; n is a multiple of 4.

//go:noescape
func axpy64f32asm(dst *float64, a float64, x *float32, n int)

//go:noescape
func axpy64asm(dst *float64, a float64, x *float64, n int)

//go:noescape
func updateRowAsm(s *float32, delta, o *float64, decay, k, q float64, n int)

// gemm4x8asm adds A·B to the 4×8 block C (row strides in elements).
//
//go:noescape
func gemm4x8asm(c *float64, ldc int, a *float64, lda int, b *float64, ldb int, k int)
