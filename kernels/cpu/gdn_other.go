//go:build !amd64 || noasm

package cpu

// Without the assembly kernels the gated delta rule takes its plain-Go
// paths; these stand-ins are never called.

func axpy64f32asm(dst *float64, a float64, x *float32, n int) { noSIMD() }

func axpy64asm(dst *float64, a float64, x *float64, n int) { noSIMD() }

func updateRowAsm(s *float32, delta, o *float64, decay, k, q float64, n int) { noSIMD() }

func gemm4x8asm(c *float64, ldc int, a *float64, lda int, b *float64, ldb int, k int) { noSIMD() }
