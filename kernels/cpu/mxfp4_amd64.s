//go:build amd64 && !noasm

#include "textflag.h"
#include "reduce_amd64.h"

// MXFP4 (E2M1 codes, E8M0 scale per 32) and bf16 weights, in the canonical
// order of simd_amd64.s: every weight is decoded exactly to f32 (an E2M1
// value times a power of two, or a widened bf16), then one 8-lane register
// per output accumulates fma(w, x) over k in order and REDUCE sums it. The
// fused products below and dotF32* over a row decoded by dequantMX4 or
// dequantBF16 therefore give the same bits.
//
// MXFP4 decoding: a 32-weight group is 16 bytes, byte j holding weight 2j
// in its low nibble and 2j+1 in its high nibble. The nibbles are split,
// interleaved back into weight order and mapped through mx4lut to the
// integers 2·e2m1(code) (so the table is exact in int8); the group's scale
// comes from a table of 2^(e-127)/2 indexed by the scale byte, so
// float(2·e2m1)·(s/2) is exactly e2m1·s.

DATA mx4lut<>+0(SB)/8, $0x0c08060403020100
DATA mx4lut<>+8(SB)/8, $0xf4f8fafcfdfeff00
GLOBL mx4lut<>(SB), RODATA|NOPTR, $16

DATA nib4<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA nib4<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL nib4<>(SB), RODATA|NOPTR, $16

// MXDEC decodes the 16 code bytes at CODES into the weight-ordered int8
// values 2·e2m1 of weights 0..15 (in LO) and 16..31 (in HI). X14 holds the
// nibble mask, X15 the table.
#define MXDEC(CODES, LO, HI, T) \
	VMOVDQU    CODES, LO; \
	VPSRLW     $4, LO, T; \
	VPAND      X14, LO, LO; \
	VPAND      X14, T, T; \
	VPUNPCKHBW T, LO, HI; \
	VPUNPCKLBW T, LO, LO; \
	VPSHUFB    LO, X15, LO; \
	VPSHUFB    HI, X15, HI

// MXCHUNK widens the 8 int8 values in the low half of V to f32 weights
// (times the half scale S) in W.
#define MXCHUNK(V, S, W) \
	VPMOVSXBD V, W; \
	VCVTDQ2PS W, W; \
	VMULPS    S, W, W

// MXROW adds one row's group (codes at CODES, scale byte at SCALE) times
// the inputs Y4..Y7 to ACC. The half-scale table is at DX.
#define MXROW(CODES, SCALE, ACC) \
	MOVBLZX      SCALE, AX; \
	VBROADCASTSS (DX)(AX*4), Y13; \
	MXDEC(CODES, X8, X10, X9); \
	MXCHUNK(X8, Y13, Y9); \
	VFMADD231PS  Y4, Y9, ACC; \
	VPSRLDQ      $8, X8, X8; \
	MXCHUNK(X8, Y13, Y9); \
	VFMADD231PS  Y5, Y9, ACC; \
	MXCHUNK(X10, Y13, Y9); \
	VFMADD231PS  Y6, Y9, ACC; \
	VPSRLDQ      $8, X10, X10; \
	MXCHUNK(X10, Y13, Y9); \
	VFMADD231PS  Y7, Y9, ACC

// func gemvMX4(codes *byte, rowBytes int, scales *byte, scaleRowBytes, groups int, half *float32, x *float32, out *[4]float32)
// out[q] = row q · x for four MXFP4 rows (q-th at codes + q·rowBytes,
// scales + q·scaleRowBytes; strides of 0 repeat one row) of groups groups.
TEXT ·gemvMX4(SB), NOSPLIT, $0-64
	MOVQ codes+0(FP), SI
	MOVQ rowBytes+8(FP), R8
	LEAQ (R8)(R8*2), R9
	LEAQ (SI)(R8*8), R10
	MOVQ scales+16(FP), BX
	MOVQ scaleRowBytes+24(FP), R11
	LEAQ (R11)(R11*2), R12
	MOVQ groups+32(FP), CX
	MOVQ half+40(FP), DX
	MOVQ x+48(FP), DI
	VMOVDQU nib4<>(SB), X14
	VMOVDQU mx4lut<>(SB), X15
	VXORPS  Y0, Y0, Y0
	VXORPS  Y1, Y1, Y1
	VXORPS  Y2, Y2, Y2
	VXORPS  Y3, Y3, Y3
	TESTQ   CX, CX
	JZ      gm4done

gm4group:
	// The next four rows' same columns: four rows stream at a time and
	// the hardware prefetcher alone leaves the loop waiting on memory.
	PREFETCHT0 (R10)
	PREFETCHT0 (R10)(R8*1)
	PREFETCHT0 (R10)(R8*2)
	PREFETCHT0 (R10)(R9*1)
	VMOVUPS (DI), Y4
	VMOVUPS 32(DI), Y5
	VMOVUPS 64(DI), Y6
	VMOVUPS 96(DI), Y7
	MXROW((SI), (BX), Y0)
	MXROW((SI)(R8*1), (BX)(R11*1), Y1)
	MXROW((SI)(R8*2), (BX)(R11*2), Y2)
	MXROW((SI)(R9*1), (BX)(R12*1), Y3)
	ADDQ $16, SI
	ADDQ $16, R10
	INCQ BX
	ADDQ $128, DI
	DECQ CX
	JNZ  gm4group

gm4done:
	STORE4(out+56(FP), X12)
	VZEROUPPER
	RET

// func dequantMX4(dst *float32, codes *byte, scales *byte, groups int, half *float32)
// Decodes groups MXFP4 groups of one row into f32.
TEXT ·dequantMX4(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ scales+16(FP), BX
	MOVQ groups+24(FP), CX
	MOVQ half+32(FP), DX
	VMOVDQU nib4<>(SB), X14
	VMOVDQU mx4lut<>(SB), X15
	TESTQ   CX, CX
	JZ      dm4done

dm4group:
	MOVBLZX      (BX), AX
	VBROADCASTSS (DX)(AX*4), Y13
	MXDEC((SI), X8, X10, X9)
	MXCHUNK(X8, Y13, Y9)
	VMOVUPS      Y9, (DI)
	VPSRLDQ      $8, X8, X8
	MXCHUNK(X8, Y13, Y9)
	VMOVUPS      Y9, 32(DI)
	MXCHUNK(X10, Y13, Y9)
	VMOVUPS      Y9, 64(DI)
	VPSRLDQ      $8, X10, X10
	MXCHUNK(X10, Y13, Y9)
	VMOVUPS      Y9, 96(DI)
	ADDQ         $16, SI
	INCQ         BX
	ADDQ         $128, DI
	DECQ         CX
	JNZ          dm4group

dm4done:
	VZEROUPPER
	RET

// BFROW adds 8 bf16 weights at ADDR times the inputs in Y4 to ACC.
#define BFROW(ADDR, ACC) \
	VPMOVZXWD   ADDR, Y9; \
	VPSLLD      $16, Y9, Y9; \
	VFMADD231PS Y4, Y9, ACC

// func gemvBF16(w *byte, ldw int, x *float32, k int, out *[4]float32)
// out[q] = row q · x for four bf16 rows of k (a multiple of 8) weights,
// row q at w + q·ldw elements (0 repeats one row).
TEXT ·gemvBF16(SB), NOSPLIT, $0-40
	MOVQ w+0(FP), SI
	MOVQ ldw+8(FP), R8
	SHLQ $1, R8
	LEAQ (R8)(R8*2), R9
	LEAQ (SI)(R8*4), R10
	MOVQ x+16(FP), DI
	MOVQ k+24(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	SHRQ   $3, CX
	JZ     gbdone

gbloop:
	PREFETCHT0 (R10)
	PREFETCHT0 (R10)(R8*1)
	PREFETCHT0 (R10)(R8*2)
	PREFETCHT0 (R10)(R9*1)
	VMOVUPS (DI), Y4
	BFROW((SI), Y0)
	BFROW((SI)(R8*1), Y1)
	BFROW((SI)(R8*2), Y2)
	BFROW((SI)(R9*1), Y3)
	ADDQ $16, SI
	ADDQ $16, R10
	ADDQ $32, DI
	DECQ CX
	JNZ  gbloop

gbdone:
	STORE4(out+32(FP), X12)
	VZEROUPPER
	RET

// func dequantBF16(dst *float32, src *byte, k int)
// Widens k (a multiple of 8) bf16 values.
TEXT ·dequantBF16(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ k+16(FP), CX
	SHRQ $3, CX
	JZ   dbdone

dbloop:
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       dbloop

dbdone:
	VZEROUPPER
	RET
