// Horizontal sums the amd64 kernels of simd_amd64.s and mxfp4_amd64.s
// share.

// REDUCE sums the 8 lanes of Y into the low lane of X (the same register)
// with a fixed tree: (a_i + a_{i+4}), then pairs (0,2),(1,3), then the two.
// T is a scratch register.
#define REDUCE(Y, X, T) \
	VEXTRACTF128 $1, Y, T; \
	VADDPS T, X, X; \
	VSHUFPS $0x4E, X, X, T; \
	VADDPS T, X, X; \
	VSHUFPS $0xB1, X, X, T; \
	VADDPS T, X, X

// STORE4 reduces the row sums Y0..Y3 into out[0..3] (OUT is the out
// argument; DX holds it afterwards), with scratch T.
#define STORE4(OUT, T) \
	MOVQ OUT, DX; \
	REDUCE(Y0, X0, T); \
	VMOVSS X0, 0(DX); \
	REDUCE(Y1, X1, T); \
	VMOVSS X1, 4(DX); \
	REDUCE(Y2, X2, T); \
	VMOVSS X2, 8(DX); \
	REDUCE(Y3, X3, T); \
	VMOVSS X3, 12(DX)
