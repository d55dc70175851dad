//go:build amd64 && !noasm

#include "textflag.h"

// AVX2/FMA kernels. Every dot product accumulates one 8-lane register per
// output over k in order, then reduces it with the same tree (REDUCE), so
// all kernels give bit-identical results for the same operands.

// shifts for 4-bit codes: lane i takes bits [4i, 4i+4) of a broadcast dword.
DATA shifts4<>+0(SB)/4, $0
DATA shifts4<>+4(SB)/4, $4
DATA shifts4<>+8(SB)/4, $8
DATA shifts4<>+12(SB)/4, $12
DATA shifts4<>+16(SB)/4, $16
DATA shifts4<>+20(SB)/4, $20
DATA shifts4<>+24(SB)/4, $24
DATA shifts4<>+28(SB)/4, $28
GLOBL shifts4<>(SB), RODATA|NOPTR, $32

DATA mask4<>+0(SB)/4, $15
GLOBL mask4<>(SB), RODATA|NOPTR, $4

// REDUCE sums the 8 lanes of Y into the low lane of X (the same register)
// with a fixed tree: (a_i + a_{i+4}), then pairs (0,2),(1,3), then the two.
#define REDUCE(Y, X, T) \
	VEXTRACTF128 $1, Y, T; \
	VADDPS T, X, X; \
	VSHUFPS $0x4E, X, X, T; \
	VADDPS T, X, X; \
	VSHUFPS $0xB1, X, X, T; \
	VADDPS T, X, X

// LOADSB loads the bf16 scales (Y4..Y7) and biases (Y8..Y11) of one group
// for four rows: rows at BX/DX + {0, R11, R12, R13}.
#define LOADSB \
	VPBROADCASTW (BX), Y4; \
	VPSLLD $16, Y4, Y4; \
	VPBROADCASTW (BX)(R11*1), Y5; \
	VPSLLD $16, Y5, Y5; \
	VPBROADCASTW (BX)(R12*1), Y6; \
	VPSLLD $16, Y6, Y6; \
	VPBROADCASTW (BX)(R13*1), Y7; \
	VPSLLD $16, Y7, Y7; \
	VPBROADCASTW (DX), Y8; \
	VPSLLD $16, Y8, Y8; \
	VPBROADCASTW (DX)(R11*1), Y9; \
	VPSLLD $16, Y9, Y9; \
	VPBROADCASTW (DX)(R12*1), Y10; \
	VPSLLD $16, Y10, Y10; \
	VPBROADCASTW (DX)(R13*1), Y11; \
	VPSLLD $16, Y11, Y11

// STORE4 reduces Y0..Y3 into out[0..3].
#define STORE4 \
	MOVQ out+64(FP), DX; \
	REDUCE(Y0, X0, X12); \
	VMOVSS X0, 0(DX); \
	REDUCE(Y1, X1, X12); \
	VMOVSS X1, 4(DX); \
	REDUCE(Y2, X2, X12); \
	VMOVSS X2, 8(DX); \
	REDUCE(Y3, X3, X12); \
	VMOVSS X3, 12(DX)

// func dotF32(a, b *float32, k int) float32
TEXT ·dotF32(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ k+16(FP), CX
	VXORPS Y0, Y0, Y0
	SHRQ $3, CX
	JZ   dot1done
	XORQ AX, AX

dot1loop:
	VMOVUPS     (DI)(AX*1), Y1
	VFMADD231PS (SI)(AX*1), Y1, Y0
	ADDQ        $32, AX
	DECQ        CX
	JNZ         dot1loop

dot1done:
	REDUCE(Y0, X0, X1)
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func dotF32x4x1(w *float32, ldw int, x *float32, k int, out *[4]float32)
TEXT ·dotF32x4x1(SB), NOSPLIT, $0-40
	MOVQ w+0(FP), SI
	MOVQ ldw+8(FP), R8
	SHLQ $2, R8
	LEAQ (SI)(R8*1), R9
	LEAQ (R9)(R8*1), R10
	LEAQ (R10)(R8*1), R11
	MOVQ x+16(FP), DI
	MOVQ k+24(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	SHRQ $3, CX
	JZ   d41done
	XORQ AX, AX

d41loop:
	VMOVUPS     (DI)(AX*1), Y4
	VFMADD231PS (SI)(AX*1), Y4, Y0
	VFMADD231PS (R9)(AX*1), Y4, Y1
	VFMADD231PS (R10)(AX*1), Y4, Y2
	VFMADD231PS (R11)(AX*1), Y4, Y3
	ADDQ        $32, AX
	DECQ        CX
	JNZ         d41loop

d41done:
	MOVQ out+32(FP), DX
	REDUCE(Y0, X0, X5)
	VMOVSS X0, 0(DX)
	REDUCE(Y1, X1, X5)
	VMOVSS X1, 4(DX)
	REDUCE(Y2, X2, X5)
	VMOVSS X2, 8(DX)
	REDUCE(Y3, X3, X5)
	VMOVSS X3, 12(DX)
	VZEROUPPER
	RET

// func dotF32x4x3(w *float32, ldw int, x0, x1, x2 *float32, k int, out *[12]float32)
// out[3q+j] = w_q · x_j.
TEXT ·dotF32x4x3(SB), NOSPLIT, $0-56
	MOVQ w+0(FP), SI
	MOVQ ldw+8(FP), R8
	SHLQ $2, R8
	LEAQ (SI)(R8*1), R9
	LEAQ (R9)(R8*1), R10
	LEAQ (R10)(R8*1), R11
	MOVQ x0+16(FP), DI
	MOVQ x1+24(FP), BX
	MOVQ x2+32(FP), DX
	MOVQ k+40(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	SHRQ $3, CX
	JZ   d43done
	XORQ AX, AX

d43loop:
	VMOVUPS     (DI)(AX*1), Y12
	VMOVUPS     (BX)(AX*1), Y13
	VMOVUPS     (DX)(AX*1), Y14
	VMOVUPS     (SI)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y0
	VFMADD231PS Y15, Y13, Y1
	VFMADD231PS Y15, Y14, Y2
	VMOVUPS     (R9)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y3
	VFMADD231PS Y15, Y13, Y4
	VFMADD231PS Y15, Y14, Y5
	VMOVUPS     (R10)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y6
	VFMADD231PS Y15, Y13, Y7
	VFMADD231PS Y15, Y14, Y8
	VMOVUPS     (R11)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y9
	VFMADD231PS Y15, Y13, Y10
	VFMADD231PS Y15, Y14, Y11
	ADDQ        $32, AX
	DECQ        CX
	JNZ         d43loop

d43done:
	MOVQ out+48(FP), DX
	REDUCE(Y0, X0, X12)
	VMOVSS X0, 0(DX)
	REDUCE(Y1, X1, X12)
	VMOVSS X1, 4(DX)
	REDUCE(Y2, X2, X12)
	VMOVSS X2, 8(DX)
	REDUCE(Y3, X3, X12)
	VMOVSS X3, 12(DX)
	REDUCE(Y4, X4, X12)
	VMOVSS X4, 16(DX)
	REDUCE(Y5, X5, X12)
	VMOVSS X5, 20(DX)
	REDUCE(Y6, X6, X12)
	VMOVSS X6, 24(DX)
	REDUCE(Y7, X7, X12)
	VMOVSS X7, 28(DX)
	REDUCE(Y8, X8, X12)
	VMOVSS X8, 32(DX)
	REDUCE(Y9, X9, X12)
	VMOVSS X9, 36(DX)
	REDUCE(Y10, X10, X12)
	VMOVSS X10, 40(DX)
	REDUCE(Y11, X11, X12)
	VMOVSS X11, 44(DX)
	VZEROUPPER
	RET

// func dequantAffine4BF16(dst *float32, codes, scales, biases *byte, groups, chunks int)
// dst[i] = float32(s·q) + b, q the 4-bit codes, s and b bf16 per group of
// chunks·8 values.
TEXT ·dequantAffine4BF16(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ scales+16(FP), BX
	MOVQ biases+24(FP), DX
	MOVQ groups+32(FP), CX
	MOVQ chunks+40(FP), R8
	VMOVDQU      shifts4<>(SB), Y13
	VPBROADCASTD mask4<>(SB), Y14

dq4group:
	VPBROADCASTW (BX), Y4
	VPSLLD       $16, Y4, Y4
	VPBROADCASTW (DX), Y5
	VPSLLD       $16, Y5, Y5
	MOVQ         R8, AX

dq4chunk:
	VPBROADCASTD (SI), Y15
	VPSRLVD      Y13, Y15, Y15
	VPAND        Y14, Y15, Y15
	VCVTDQ2PS    Y15, Y15
	VMULPS       Y4, Y15, Y15
	VADDPS       Y5, Y15, Y15
	VMOVUPS      Y15, (DI)
	ADDQ         $4, SI
	ADDQ         $32, DI
	DECQ         AX
	JNZ          dq4chunk
	ADDQ         $2, BX
	ADDQ         $2, DX
	DECQ         CX
	JNZ          dq4group
	VZEROUPPER
	RET

// func dequantAffine8BF16(dst *float32, codes, scales, biases *byte, groups, chunks int)
TEXT ·dequantAffine8BF16(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ scales+16(FP), BX
	MOVQ biases+24(FP), DX
	MOVQ groups+32(FP), CX
	MOVQ chunks+40(FP), R8

dq8group:
	VPBROADCASTW (BX), Y4
	VPSLLD       $16, Y4, Y4
	VPBROADCASTW (DX), Y5
	VPSLLD       $16, Y5, Y5
	MOVQ         R8, AX

dq8chunk:
	VPMOVZXBD (SI), Y15
	VCVTDQ2PS Y15, Y15
	VMULPS    Y4, Y15, Y15
	VADDPS    Y5, Y15, Y15
	VMOVUPS   Y15, (DI)
	ADDQ      $8, SI
	ADDQ      $32, DI
	DECQ      AX
	JNZ       dq8chunk
	ADDQ      $2, BX
	ADDQ      $2, DX
	DECQ      CX
	JNZ       dq8group
	VZEROUPPER
	RET

// func gemvAffine4BF16x4(codes *byte, rowBytes int, scales, biases *byte, scaleRowBytes, groups, chunks int, x *float32, out *[4]float32)
// Four rows of 4-bit MLX affine weights dotted with x, dequantizing in
// registers exactly as dequantAffine4BF16 does.
TEXT ·gemvAffine4BF16x4(SB), NOSPLIT, $0-72
	MOVQ codes+0(FP), SI
	MOVQ rowBytes+8(FP), R8
	LEAQ (R8)(R8*1), R9
	LEAQ (R9)(R8*1), R10
	MOVQ scales+16(FP), BX
	MOVQ biases+24(FP), DX
	MOVQ scaleRowBytes+32(FP), R11
	LEAQ (R11)(R11*1), R12
	LEAQ (R12)(R11*1), R13
	MOVQ groups+40(FP), CX
	MOVQ chunks+48(FP), R14
	MOVQ x+56(FP), DI
	VMOVDQU      shifts4<>(SB), Y13
	VPBROADCASTD mask4<>(SB), Y14
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

g4group:
	LOADSB
	MOVQ R14, AX

g4chunk:
	VMOVUPS      (DI), Y12
	VPBROADCASTD (SI), Y15
	VPSRLVD      Y13, Y15, Y15
	VPAND        Y14, Y15, Y15
	VCVTDQ2PS    Y15, Y15
	VMULPS       Y4, Y15, Y15
	VADDPS       Y8, Y15, Y15
	VFMADD231PS  Y15, Y12, Y0
	VPBROADCASTD (SI)(R8*1), Y15
	VPSRLVD      Y13, Y15, Y15
	VPAND        Y14, Y15, Y15
	VCVTDQ2PS    Y15, Y15
	VMULPS       Y5, Y15, Y15
	VADDPS       Y9, Y15, Y15
	VFMADD231PS  Y15, Y12, Y1
	VPBROADCASTD (SI)(R9*1), Y15
	VPSRLVD      Y13, Y15, Y15
	VPAND        Y14, Y15, Y15
	VCVTDQ2PS    Y15, Y15
	VMULPS       Y6, Y15, Y15
	VADDPS       Y10, Y15, Y15
	VFMADD231PS  Y15, Y12, Y2
	VPBROADCASTD (SI)(R10*1), Y15
	VPSRLVD      Y13, Y15, Y15
	VPAND        Y14, Y15, Y15
	VCVTDQ2PS    Y15, Y15
	VMULPS       Y7, Y15, Y15
	VADDPS       Y11, Y15, Y15
	VFMADD231PS  Y15, Y12, Y3
	ADDQ         $4, SI
	ADDQ         $32, DI
	DECQ         AX
	JNZ          g4chunk
	ADDQ         $2, BX
	ADDQ         $2, DX
	DECQ         CX
	JNZ          g4group
	STORE4
	VZEROUPPER
	RET

// func gemvAffine8BF16x4(codes *byte, rowBytes int, scales, biases *byte, scaleRowBytes, groups, chunks int, x *float32, out *[4]float32)
TEXT ·gemvAffine8BF16x4(SB), NOSPLIT, $0-72
	MOVQ codes+0(FP), SI
	MOVQ rowBytes+8(FP), R8
	LEAQ (R8)(R8*1), R9
	LEAQ (R9)(R8*1), R10
	MOVQ scales+16(FP), BX
	MOVQ biases+24(FP), DX
	MOVQ scaleRowBytes+32(FP), R11
	LEAQ (R11)(R11*1), R12
	LEAQ (R12)(R11*1), R13
	MOVQ groups+40(FP), CX
	MOVQ chunks+48(FP), R14
	MOVQ x+56(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

g8group:
	LOADSB
	MOVQ R14, AX

g8chunk:
	VMOVUPS     (DI), Y12
	VPMOVZXBD   (SI), Y15
	VCVTDQ2PS   Y15, Y15
	VMULPS      Y4, Y15, Y15
	VADDPS      Y8, Y15, Y15
	VFMADD231PS Y15, Y12, Y0
	VPMOVZXBD   (SI)(R8*1), Y15
	VCVTDQ2PS   Y15, Y15
	VMULPS      Y5, Y15, Y15
	VADDPS      Y9, Y15, Y15
	VFMADD231PS Y15, Y12, Y1
	VPMOVZXBD   (SI)(R9*1), Y15
	VCVTDQ2PS   Y15, Y15
	VMULPS      Y6, Y15, Y15
	VADDPS      Y10, Y15, Y15
	VFMADD231PS Y15, Y12, Y2
	VPMOVZXBD   (SI)(R10*1), Y15
	VCVTDQ2PS   Y15, Y15
	VMULPS      Y7, Y15, Y15
	VADDPS      Y11, Y15, Y15
	VFMADD231PS Y15, Y12, Y3
	ADDQ        $8, SI
	ADDQ        $32, DI
	DECQ        AX
	JNZ         g8chunk
	ADDQ        $2, BX
	ADDQ        $2, DX
	DECQ        CX
	JNZ         g8group
	STORE4
	VZEROUPPER
	RET

// func axpyF32(dst *float32, a float32, x *float32, k int)
// dst[i] += a·x[i] (one FMA per element), k a multiple of 8.
TEXT ·axpyF32(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	VBROADCASTSS a+8(FP), Y0
	MOVQ         x+16(FP), SI
	MOVQ         k+24(FP), CX
	SHRQ         $3, CX
	JZ           axdone

axloop:
	VMOVUPS     (DI), Y1
	VFMADD231PS (SI), Y0, Y1
	VMOVUPS     Y1, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	DECQ        CX
	JNZ         axloop

axdone:
	VZEROUPPER
	RET

// func cvtF16(dst *float32, src *uint16, k int)
// Widens k (a multiple of 8) f16 values.
TEXT ·cvtF16(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ k+16(FP), CX
	SHRQ $3, CX
	JZ   cvdone

cvloop:
	VCVTPH2PS (SI), Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       cvloop

cvdone:
	VZEROUPPER
	RET
