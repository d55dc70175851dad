//go:build amd64 && !noasm

#include "textflag.h"
#include "reduce_amd64.h"

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

// LOADS4 broadcasts the bf16 scales of the current group of four rows
// (rows at BX + {0, R11, R12, R13}) into Y4..Y7.
#define LOADS4 \
	VPBROADCASTW (BX), Y4; \
	VPSLLD $16, Y4, Y4; \
	VPBROADCASTW (BX)(R11*1), Y5; \
	VPSLLD $16, Y5, Y5; \
	VPBROADCASTW (BX)(R12*1), Y6; \
	VPSLLD $16, Y6, Y6; \
	VPBROADCASTW (BX)(R13*1), Y7; \
	VPSLLD $16, Y7, Y7

// BIAS4 adds the group's bias terms T = fma(XS, b, T) to the row sums
// Y0..Y3, with XS at (R14) and bf16 biases at DX + {0, R11, R12, R13}.
#define BIAS4 \
	VMOVUPS (R14), Y8; \
	VPBROADCASTW (DX), Y11; \
	VPSLLD $16, Y11, Y11; \
	VFMADD231PS Y11, Y8, Y0; \
	VPBROADCASTW (DX)(R11*1), Y11; \
	VPSLLD $16, Y11, Y11; \
	VFMADD231PS Y11, Y8, Y1; \
	VPBROADCASTW (DX)(R12*1), Y11; \
	VPSLLD $16, Y11, Y11; \
	VFMADD231PS Y11, Y8, Y2; \
	VPBROADCASTW (DX)(R13*1), Y11; \
	VPSLLD $16, Y11, Y11; \
	VFMADD231PS Y11, Y8, Y3

// NIB4 adds one 16-weight block of a 4-bit row (8 code bytes at ADDR,
// group scale in S) to ACC, with the prepared inputs in Y8 (even) and Y9
// (odd): ACC = fma(float32(lo·s), Y8, ACC), then the high nibbles.
#define NIB4(ADDR, ACC, S, LO, HI) \
	VPMOVZXBD ADDR, LO; \
	VPSRLD $4, LO, HI; \
	VPAND Y10, LO, LO; \
	VCVTDQ2PS LO, LO; \
	VCVTDQ2PS HI, HI; \
	VMULPS S, LO, LO; \
	VMULPS S, HI, HI; \
	VFMADD231PS Y8, LO, ACC; \
	VFMADD231PS Y9, HI, ACC

// BYTE8 adds one 8-weight chunk of an 8-bit row (codes at ADDR, group
// scale in S) to ACC with the inputs in Y8.
#define BYTE8(ADDR, ACC, S, Q) \
	VPMOVZXBD ADDR, Q; \
	VCVTDQ2PS Q, Q; \
	VMULPS S, Q, Q; \
	VFMADD231PS Y8, Q, ACC

// EXPCONST loads the constants EXP uses into Y9..Y14.
#define EXPCONST \
	VBROADCASTSS expc<>+0(SB), Y14; \
	VBROADCASTSS expc<>+4(SB), Y13; \
	VBROADCASTSS expc<>+8(SB), Y12; \
	VBROADCASTSS expc<>+36(SB), Y11; \
	VBROADCASTSS expc<>+40(SB), Y10; \
	VPBROADCASTD expc<>+44(SB), Y9

// EXP sets Y2 = exp(Y0) lane by lane (Cephes expf; x clamped below at
// -87.34), clobbering Y0, Y1, Y3, Y4.
#define EXP \
	VMAXPS Y10, Y0, Y0; \
	VMULPS Y14, Y0, Y1; \
	VROUNDPS $0, Y1, Y1; \
	VFNMADD231PS Y13, Y1, Y0; \
	VFNMADD231PS Y12, Y1, Y0; \
	VBROADCASTSS expc<>+12(SB), Y2; \
	VBROADCASTSS expc<>+16(SB), Y3; \
	VFMADD213PS Y3, Y0, Y2; \
	VBROADCASTSS expc<>+20(SB), Y3; \
	VFMADD213PS Y3, Y0, Y2; \
	VBROADCASTSS expc<>+24(SB), Y3; \
	VFMADD213PS Y3, Y0, Y2; \
	VBROADCASTSS expc<>+28(SB), Y3; \
	VFMADD213PS Y3, Y0, Y2; \
	VBROADCASTSS expc<>+32(SB), Y3; \
	VFMADD213PS Y3, Y0, Y2; \
	VMULPS Y0, Y0, Y4; \
	VFMADD213PS Y0, Y4, Y2; \
	VADDPS Y11, Y2, Y2; \
	VCVTPS2DQ Y1, Y1; \
	VPADDD Y9, Y1, Y1; \
	VPSLLD $23, Y1, Y1; \
	VMULPS Y1, Y2, Y2

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
	STORE4(out+32(FP), X5)
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
	STORE4(out+48(FP), X12)
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

// MLX affine weights with bf16 scales (4- and 8-bit) use one canonical
// order per output y = W·x, shared by the fused GEMV and the GEMM
// microkernel so that both give the same bits:
//
//	T = 0 (8 lanes)
//	for each group g:
//	    for each chunk c of 8 weights: T = fma(float32(q_c·s_g), x_c, T)
//	    T = fma(XS_g, b_g, T)
//	y = REDUCE(T)
//
// q_c are the codes as floats and x_c the matching inputs. For 4-bit
// weights the chunks of each 16-weight block are the even then the odd
// weights (low then high nibbles of 8 bytes), so x is prepared in that
// de-interleaved order (prepX4); XS_g is the lane-wise sum of the group's
// input chunks in chunk order, so Σ b·x over the group is b_g·ΣXS_g.

// func prepX4(xp, xs, x *float32, groups, blocks int)
// De-interleaves x (per 16 values: the 8 even, then the 8 odd) into xp and
// writes the 8-lane group sums into xs.
TEXT ·prepX4(SB), NOSPLIT, $0-40
	MOVQ xp+0(FP), DI
	MOVQ xs+8(FP), DX
	MOVQ x+16(FP), SI
	MOVQ groups+24(FP), CX

px4group:
	VXORPS Y2, Y2, Y2
	MOVQ   blocks+32(FP), AX

px4block:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VSHUFPS $0x88, Y1, Y0, Y3
	VPERMPD $0xD8, Y3, Y3
	VSHUFPS $0xDD, Y1, Y0, Y4
	VPERMPD $0xD8, Y4, Y4
	VMOVUPS Y3, (DI)
	VMOVUPS Y4, 32(DI)
	VADDPS  Y3, Y2, Y2
	VADDPS  Y4, Y2, Y2
	ADDQ    $64, SI
	ADDQ    $64, DI
	DECQ    AX
	JNZ     px4block
	VMOVUPS Y2, (DX)
	ADDQ    $32, DX
	DECQ    CX
	JNZ     px4group
	VZEROUPPER
	RET

// func prepX8(xs, x *float32, groups, chunks int)
// Writes the 8-lane group sums of x into xs.
TEXT ·prepX8(SB), NOSPLIT, $0-32
	MOVQ xs+0(FP), DX
	MOVQ x+8(FP), SI
	MOVQ groups+16(FP), CX

px8group:
	VXORPS Y2, Y2, Y2
	MOVQ   chunks+24(FP), AX

px8chunk:
	VADDPS (SI), Y2, Y2
	ADDQ   $32, SI
	DECQ   AX
	JNZ    px8chunk
	VMOVUPS Y2, (DX)
	ADDQ    $32, DX
	DECQ    CX
	JNZ     px8group
	VZEROUPPER
	RET

// func gemvA4(codes *byte, rowBytes int, scales, biases *byte, scaleRowBytes, groups, blocks int, xp, xs *float32, out *[4]float32)
// Four rows of 4-bit bf16-scaled MLX affine weights times one prepared
// input row (prepX4), in the canonical order.
TEXT ·gemvA4(SB), NOSPLIT, $0-80
	MOVQ codes+0(FP), SI
	MOVQ rowBytes+8(FP), R8
	LEAQ (R8)(R8*2), R9
	LEAQ (SI)(R8*8), R10
	MOVQ scales+16(FP), BX
	MOVQ biases+24(FP), DX
	MOVQ scaleRowBytes+32(FP), R11
	LEAQ (R11)(R11*1), R12
	LEAQ (R12)(R11*1), R13
	MOVQ groups+40(FP), CX
	MOVQ xp+56(FP), DI
	MOVQ xs+64(FP), R14
	VPBROADCASTD mask4<>(SB), Y10
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1
	VXORPS       Y2, Y2, Y2
	VXORPS       Y3, Y3, Y3

ga4group:
	LOADS4
	MOVQ blocks+48(FP), AX

ga4block:
	// Prefetch the same columns eight rows on: rows go four at a time,
	// and the hardware prefetcher alone leaves the loop waiting on memory.
	PREFETCHT0 (R10)
	PREFETCHT0 (R10)(R8*1)
	PREFETCHT0 (R10)(R8*2)
	PREFETCHT0 (R10)(R9*1)
	VMOVUPS (DI), Y8
	VMOVUPS 32(DI), Y9
	NIB4((SI), Y0, Y4, Y11, Y12)
	NIB4((SI)(R8*1), Y1, Y5, Y13, Y14)
	NIB4((SI)(R8*2), Y2, Y6, Y11, Y12)
	NIB4((SI)(R9*1), Y3, Y7, Y13, Y14)
	ADDQ $8, SI
	ADDQ $8, R10
	ADDQ $64, DI
	DECQ AX
	JNZ  ga4block
	BIAS4
	ADDQ $2, BX
	ADDQ $2, DX
	ADDQ $32, R14
	DECQ CX
	JNZ  ga4group
	STORE4(out+72(FP), X12)
	VZEROUPPER
	RET

// func gemvA8(codes *byte, rowBytes int, scales, biases *byte, scaleRowBytes, groups, chunks int, x, xs *float32, out *[4]float32)
// Four rows of 8-bit bf16-scaled MLX affine weights times one input row
// (group sums from prepX8), in the canonical order.
TEXT ·gemvA8(SB), NOSPLIT, $0-80
	MOVQ codes+0(FP), SI
	MOVQ rowBytes+8(FP), R8
	LEAQ (R8)(R8*2), R9
	LEAQ (SI)(R8*8), R10
	MOVQ scales+16(FP), BX
	MOVQ biases+24(FP), DX
	MOVQ scaleRowBytes+32(FP), R11
	LEAQ (R11)(R11*1), R12
	LEAQ (R12)(R11*1), R13
	MOVQ groups+40(FP), CX
	MOVQ x+56(FP), DI
	MOVQ xs+64(FP), R14
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

ga8group:
	LOADS4
	MOVQ chunks+48(FP), AX

ga8chunk:
	PREFETCHT0 (R10)
	PREFETCHT0 (R10)(R8*1)
	PREFETCHT0 (R10)(R8*2)
	PREFETCHT0 (R10)(R9*1)
	VMOVUPS (DI), Y8
	BYTE8((SI), Y0, Y4, Y11)
	BYTE8((SI)(R8*1), Y1, Y5, Y12)
	BYTE8((SI)(R8*2), Y2, Y6, Y13)
	BYTE8((SI)(R9*1), Y3, Y7, Y14)
	ADDQ $8, SI
	ADDQ $8, R10
	ADDQ $32, DI
	DECQ AX
	JNZ  ga8chunk
	BIAS4
	ADDQ $2, BX
	ADDQ $2, DX
	ADDQ $32, R14
	DECQ CX
	JNZ  ga8group
	STORE4(out+72(FP), X12)
	VZEROUPPER
	RET

// func unpackA4(dst *float32, codes, scales *byte, groups, blocks, stride int)
// Writes one row of 4-bit codes as float32(q·s) in the prepared order (per
// 16 weights: the 8 low nibbles, then the 8 high nibbles), one 8-float
// chunk every stride bytes (so four rows can interleave, see gemmA4x3);
// scales are the row's bf16 group scales.
TEXT ·unpackA4(SB), NOSPLIT, $0-48
	MOVQ         dst+0(FP), DI
	MOVQ         codes+8(FP), SI
	MOVQ         scales+16(FP), BX
	MOVQ         groups+24(FP), CX
	MOVQ         stride+40(FP), DX
	VPBROADCASTD mask4<>(SB), Y10

ua4group:
	VPBROADCASTW (BX), Y4
	VPSLLD       $16, Y4, Y4
	MOVQ         blocks+32(FP), AX

ua4:
	VPMOVZXBD (SI), Y0
	VPSRLD    $4, Y0, Y1
	VPAND     Y10, Y0, Y0
	VCVTDQ2PS Y0, Y0
	VCVTDQ2PS Y1, Y1
	VMULPS    Y4, Y0, Y0
	VMULPS    Y4, Y1, Y1
	VMOVUPS   Y0, (DI)
	VMOVUPS   Y1, (DI)(DX*1)
	ADDQ      $8, SI
	LEAQ      (DI)(DX*2), DI
	DECQ      AX
	JNZ       ua4
	ADDQ      $2, BX
	DECQ      CX
	JNZ       ua4group
	VZEROUPPER
	RET

// func unpackA8(dst *float32, codes, scales *byte, groups, chunks, stride int)
TEXT ·unpackA8(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ scales+16(FP), BX
	MOVQ groups+24(FP), CX
	MOVQ stride+40(FP), DX

ua8group:
	VPBROADCASTW (BX), Y4
	VPSLLD       $16, Y4, Y4
	MOVQ         chunks+32(FP), AX

ua8:
	VPMOVZXBD (SI), Y0
	VCVTDQ2PS Y0, Y0
	VMULPS    Y4, Y0, Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $8, SI
	ADDQ      DX, DI
	DECQ      AX
	JNZ       ua8
	ADDQ      $2, BX
	DECQ      CX
	JNZ       ua8group
	VZEROUPPER
	RET

// func gemmA4x3(q *float32, b *float32, groups, chunks int, x0, x1, x2, xs0, xs1, xs2 *float32, t *[96]float32)
// Four rows of unpacked weights float32(q·s), interleaved chunk by chunk
// (row r's chunk j at q + (4j+r)·8 floats), with their f32 biases
// interleaved likewise (row r of group g at b + 4g+r), times three prepared
// input rows (group sums at xs0, xs1, xs2),
// continuing the running sums t[(3r+c)·8 …] in the canonical order, so
// calls over consecutive ranges of groups make one sum; reduceT finishes.
TEXT ·gemmA4x3(SB), NOSPLIT, $0-88
	MOVQ q+0(FP), SI
	MOVQ b+8(FP), DX
	MOVQ groups+16(FP), CX
	MOVQ x0+32(FP), DI
	MOVQ x1+40(FP), BX
	MOVQ x2+48(FP), R8
	MOVQ xs0+56(FP), R14
	MOVQ xs1+64(FP), R12
	MOVQ xs2+72(FP), R13
	MOVQ t+80(FP), R10
	VMOVUPS 0(R10), Y0
	VMOVUPS 32(R10), Y1
	VMOVUPS 64(R10), Y2
	VMOVUPS 96(R10), Y3
	VMOVUPS 128(R10), Y4
	VMOVUPS 160(R10), Y5
	VMOVUPS 192(R10), Y6
	VMOVUPS 224(R10), Y7
	VMOVUPS 256(R10), Y8
	VMOVUPS 288(R10), Y9
	VMOVUPS 320(R10), Y10
	VMOVUPS 352(R10), Y11

g43group:
	MOVQ chunks+24(FP), AX

g43chunk:
	VMOVUPS     (DI), Y12
	VMOVUPS     (BX), Y13
	VMOVUPS     (R8), Y14
	VMOVUPS     (SI), Y15
	VFMADD231PS Y12, Y15, Y0
	VFMADD231PS Y13, Y15, Y1
	VFMADD231PS Y14, Y15, Y2
	VMOVUPS     32(SI), Y15
	VFMADD231PS Y12, Y15, Y3
	VFMADD231PS Y13, Y15, Y4
	VFMADD231PS Y14, Y15, Y5
	VMOVUPS     64(SI), Y15
	VFMADD231PS Y12, Y15, Y6
	VFMADD231PS Y13, Y15, Y7
	VFMADD231PS Y14, Y15, Y8
	VMOVUPS     96(SI), Y15
	VFMADD231PS Y12, Y15, Y9
	VFMADD231PS Y13, Y15, Y10
	VFMADD231PS Y14, Y15, Y11
	ADDQ        $128, SI
	ADDQ        $32, DI
	ADDQ        $32, BX
	ADDQ        $32, R8
	DECQ        AX
	JNZ         g43chunk
	VBROADCASTSS 0(DX), Y12
	VFMADD231PS  (R14), Y12, Y0
	VFMADD231PS  (R12), Y12, Y1
	VFMADD231PS  (R13), Y12, Y2
	VBROADCASTSS 4(DX), Y12
	VFMADD231PS  (R14), Y12, Y3
	VFMADD231PS  (R12), Y12, Y4
	VFMADD231PS  (R13), Y12, Y5
	VBROADCASTSS 8(DX), Y12
	VFMADD231PS  (R14), Y12, Y6
	VFMADD231PS  (R12), Y12, Y7
	VFMADD231PS  (R13), Y12, Y8
	VBROADCASTSS 12(DX), Y12
	VFMADD231PS  (R14), Y12, Y9
	VFMADD231PS  (R12), Y12, Y10
	VFMADD231PS  (R13), Y12, Y11
	ADDQ         $16, DX
	ADDQ         $32, R14
	ADDQ         $32, R12
	ADDQ         $32, R13
	DECQ         CX
	JNZ          g43group
	VMOVUPS Y0, 0(R10)
	VMOVUPS Y1, 32(R10)
	VMOVUPS Y2, 64(R10)
	VMOVUPS Y3, 96(R10)
	VMOVUPS Y4, 128(R10)
	VMOVUPS Y5, 160(R10)
	VMOVUPS Y6, 192(R10)
	VMOVUPS Y7, 224(R10)
	VMOVUPS Y8, 256(R10)
	VMOVUPS Y9, 288(R10)
	VMOVUPS Y10, 320(R10)
	VMOVUPS Y11, 352(R10)
	VZEROUPPER
	RET

// func reduceT(t *float32, out *float32, n int)
// Reduces n running sums of 8 lanes (t, 8 floats apart) into out[0..n) with
// REDUCE.
TEXT ·reduceT(SB), NOSPLIT, $0-24
	MOVQ t+0(FP), R10
	MOVQ out+8(FP), DX
	MOVQ n+16(FP), CX

rtloop:
	VMOVUPS (R10), Y4
	REDUCE(Y4, X4, X12)
	VMOVSS  X4, (DX)
	ADDQ    $32, R10
	ADDQ    $4, DX
	DECQ    CX
	JNZ     rtloop
	VZEROUPPER
	RET

// func axpy8(o *float32, p *float32, v *float32, ldv, k int)
// o[0:k] += p[j]·v[j·ldv : j·ldv+k] for j = 0 … 7, one FMA per term in
// order of j (the same operations as eight axpyF32 calls), k a multiple of
// 8.
TEXT ·axpy8(SB), NOSPLIT, $0-40
	MOVQ         o+0(FP), DI
	MOVQ         p+8(FP), AX
	MOVQ         v+16(FP), SI
	MOVQ         ldv+24(FP), R8
	SHLQ         $2, R8
	LEAQ         (R8)(R8*2), R9
	LEAQ         (SI)(R8*4), R10
	MOVQ         k+32(FP), CX
	VBROADCASTSS 0(AX), Y0
	VBROADCASTSS 4(AX), Y1
	VBROADCASTSS 8(AX), Y2
	VBROADCASTSS 12(AX), Y3
	VBROADCASTSS 16(AX), Y4
	VBROADCASTSS 20(AX), Y5
	VBROADCASTSS 24(AX), Y6
	VBROADCASTSS 28(AX), Y7
	SHRQ         $3, CX
	JZ           ax8done

ax8loop:
	VMOVUPS     (DI), Y8
	VFMADD231PS (SI), Y0, Y8
	VFMADD231PS (SI)(R8*1), Y1, Y8
	VFMADD231PS (SI)(R8*2), Y2, Y8
	VFMADD231PS (SI)(R9*1), Y3, Y8
	VFMADD231PS (R10), Y4, Y8
	VFMADD231PS (R10)(R8*1), Y5, Y8
	VFMADD231PS (R10)(R8*2), Y6, Y8
	VFMADD231PS (R10)(R9*1), Y7, Y8
	VMOVUPS     Y8, (DI)
	ADDQ        $32, DI
	ADDQ        $32, SI
	ADDQ        $32, R10
	DECQ        CX
	JNZ         ax8loop

ax8done:
	VZEROUPPER
	RET

// Constants of the exponential below (Cephes expf: exp(x) = 2^n·P(r),
// x = n·ln2 + r, |r| ≤ ln2/2; relative error about 1e-7).
DATA expc<>+0(SB)/4, $0x3fb8aa3b  // log2(e)
DATA expc<>+4(SB)/4, $0x3f318000  // ln2 high part 0.693359375
DATA expc<>+8(SB)/4, $0xb95e8083  // ln2 low part -2.12194440e-4
DATA expc<>+12(SB)/4, $0x39506967 // p0 1.9875691500e-4
DATA expc<>+16(SB)/4, $0x3ab743ce // p1 1.3981999507e-3
DATA expc<>+20(SB)/4, $0x3c088908 // p2 8.3334519073e-3
DATA expc<>+24(SB)/4, $0x3d2aa9c1 // p3 4.1665795894e-2
DATA expc<>+28(SB)/4, $0x3e2aaaaa // p4 1.6666665459e-1
DATA expc<>+32(SB)/4, $0x3f000000 // p5 0.5
DATA expc<>+36(SB)/4, $0x3f800000 // 1
DATA expc<>+40(SB)/4, $0xc2aeac50 // -87.3365 (below: exp underflows to 0)
DATA expc<>+44(SB)/4, $127
DATA expc<>+48(SB)/4, $0x42b00000 // 88 (above: exp would overflow)
GLOBL expc<>(SB), RODATA|NOPTR, $52

// func expShift(dst, src *float32, m float32, n int) float32
// dst[i] = exp(src[i] - m) for i < n (a multiple of 8), and returns their
// sum (8 lanes in order of i, then REDUCE). src and dst may alias.
TEXT ·expShift(SB), NOSPLIT, $0-36
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	VBROADCASTSS m+16(FP), Y15
	MOVQ         n+24(FP), CX
	EXPCONST
	VXORPS       Y8, Y8, Y8
	SHRQ         $3, CX
	JZ           exdone

exloop:
	VMOVUPS (SI), Y0
	VSUBPS  Y15, Y0, Y0
	EXP
	VMOVUPS Y2, (DI)
	VADDPS  Y2, Y8, Y8
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     exloop

exdone:
	REDUCE(Y8, X8, X0)
	VMOVSS X8, ret+32(FP)
	VZEROUPPER
	RET

// func siluMul(dst, gate, up *float32, n int)
// dst[i] = gate[i] / (1 + exp(-gate[i])) · up[i] for i < n (a multiple of 8).
TEXT ·siluMul(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ gate+8(FP), SI
	MOVQ up+16(FP), DX
	MOVQ n+24(FP), CX
	EXPCONST
	VBROADCASTSS expc<>+48(SB), Y15
	SHRQ         $3, CX
	JZ           sldone

slloop:
	VMOVUPS (SI), Y5
	VXORPS  Y0, Y0, Y0
	VSUBPS  Y5, Y0, Y0     // -g
	VMINPS  Y15, Y0, Y0    // keep exp finite
	EXP
	VADDPS  Y11, Y2, Y2    // 1 + exp(-g)
	VDIVPS  Y2, Y5, Y5     // g / (1 + exp(-g))
	VMULPS  (DX), Y5, Y5
	VMOVUPS Y5, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	DECQ    CX
	JNZ     slloop

sldone:
	VZEROUPPER
	RET
