package quant

import (
	"encoding/hex"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPackBitsExamples(t *testing.T) {
	// Examples from the MLX packing rule (LSB-first stream).
	tests := []struct {
		bits  int
		codes []uint8
		want  string
	}{
		{4, []uint8{1, 2, 3, 4, 5, 6, 7, 8}, "21436587"}, // the word 0x87654321, little-endian
		{3, []uint8{0, 1, 2, 3, 4, 5, 6, 7}, "88c6fa"},
		{5, []uint8{0, 1, 2, 3, 4, 5, 6, 7}, "2088418a39"},
		{6, []uint8{1, 2, 3, 4}, "813010"},
		{2, []uint8{0, 1, 2, 3}, "e4"},
		{8, []uint8{7, 200}, "07c8"},
	}
	for _, tc := range tests {
		got, err := PackBits(tc.codes, tc.bits)
		require.NoError(t, err)
		require.Equal(t, tc.want, hex.EncodeToString(got), "PackBits(%v, %d)", tc.codes, tc.bits)
		back := make([]uint8, len(tc.codes))
		UnpackBits(got, tc.bits, 0, back)
		require.Equal(t, tc.codes, back, "UnpackBits round trip, %d bits", tc.bits)
	}
	_, err := PackBits([]uint8{16}, 4)
	require.Error(t, err, "a 4-bit code of 16 must be refused")
	_, err = PackBits([]uint8{1}, 3)
	require.Error(t, err, "3 bits do not fill a byte")
}

func TestF16RoundTripExhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			require.True(t, math.IsNaN(float64(F16ToF32(F32ToF16(f)))), "NaN %#04x", h)
			continue
		}
		require.Equal(t, uint16(h), F32ToF16(f), "F32ToF16(F16ToF32(%#04x))", h)
	}
}

func TestF32ToF16Rounding(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3c00},
		{65504, 0x7bff},
		{65520, 0x7c00},            // rounds up to inf
		{1 + 1.0/2048, 0x3c00},     // tie, even stays
		{1 + 3.0/2048, 0x3c02},     // tie, odd rounds up
		{5.960464477539063e-08, 1}, // smallest subnormal
		{2.98e-08, 0},              // below half the smallest subnormal
		{-2, 0xc000},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, F32ToF16(tc.in), "F32ToF16(%g)", tc.in)
	}
}

func TestBF16(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := BF16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		require.Equal(t, uint16(h), F32ToBF16(f), "F32ToBF16(BF16ToF32(%#04x))", h)
	}
	require.Equal(t, uint16(0x3f80), F32ToBF16(1+1.0/256), "tie to even")
	require.Equal(t, uint16(0x3f82), F32ToBF16(1+3.0/256), "tie to even, odd")
}

func TestE8M0AndE2M1(t *testing.T) {
	require.Equal(t, float32(1), E8M0ToF32(127))
	require.Equal(t, float32(0.5), E8M0ToF32(126))
	require.Equal(t, float32(math.Ldexp(1, -127)), E8M0ToF32(0))
	require.True(t, math.IsInf(float64(E8M0ToF32(255)), 1))
	require.Equal(t, float32(-6), E2M1ToF32(15))
	require.Equal(t, float32(1.5), E2M1ToF32(3))
}

func randMatrix(r *rand.Rand, rows, cols int) []float32 {
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(r.NormFloat64()) * 0.1
	}
	return w
}

func TestAffineRoundTripErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, bits := range []int{2, 3, 4, 5, 6, 8} {
		for _, group := range []int{32, 64, 128} {
			for _, st := range []ScaleType{ScaleF32, ScaleF16, ScaleBF16} {
				rows, cols := 5, 256
				w := randMatrix(rng, rows, cols)
				m, err := QuantizeAffine(w, rows, cols, bits, group, st)
				require.NoError(t, err)
				require.NoError(t, m.Validate())
				d := m.Dequantize()
				levels := float32(int(1)<<bits - 1)
				for r := 0; r < rows; r++ {
					for c := 0; c < cols; c++ {
						s, b := m.Scale(r, c/group), m.Bias(r, c/group)
						// Half a step, plus what narrowing the scale and
						// bias to st can add across the code range.
						rel := float32(0)
						switch st {
						case ScaleBF16:
							rel = 1.0 / 256
						case ScaleF16:
							rel = 1.0 / 2048
						}
						// MLX nudges the scale so 0.0 is exact, which can
						// shrink the range; values outside it clamp.
						lo, hi := b, b+levels*s
						if lo > hi {
							lo, hi = hi, lo
						}
						x := w[r*cols+c]
						out := max(lo-x, x-hi, 0)
						bound := out + abs32(s)/2*1.0001 + rel*(levels*abs32(s)+abs32(b)) + 1e-6
						require.LessOrEqual(t, abs32(d[r*cols+c]-x), bound,
							"affine%d g%d %s at (%d,%d): w=%g deq=%g", bits, group, st, r, c, w[r*cols+c], d[r*cols+c])
					}
				}
			}
		}
	}
}

func TestAffineZeroExact(t *testing.T) {
	// MLX nudges the scale so that 0.0 is representable.
	w := make([]float32, 64)
	for i := range w {
		w[i] = float32(i-20) * 0.01
	}
	w[5] = 0
	m, err := QuantizeAffine(w, 1, 64, 4, 64, ScaleF32)
	require.NoError(t, err)
	require.Equal(t, float32(0), m.Dequantize()[5])
}

func TestAffineDequantFormula(t *testing.T) {
	// Dequantization is float32(s·q) + b, each step rounded.
	rng := rand.New(rand.NewPCG(3, 4))
	w := randMatrix(rng, 3, 64)
	m, err := QuantizeAffine(w, 3, 64, 4, 32, ScaleBF16)
	require.NoError(t, err)
	d := m.Dequantize()
	codes := make([]uint8, 64)
	for r := 0; r < 3; r++ {
		UnpackBits(m.Data[r*32:(r+1)*32], 4, 0, codes)
		for c := 0; c < 64; c++ {
			s, b := m.Scale(r, c/32), m.Bias(r, c/32)
			prod := s * float32(codes[c])
			require.Equal(t, prod+b, d[r*64+c])
		}
	}
}

func TestMXFP4RoundTripErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	rows, cols := 7, 128
	w := randMatrix(rng, rows, cols)
	w[3] = 0
	m, err := QuantizeMXFP4(w, rows, cols)
	require.NoError(t, err)
	require.NoError(t, m.Validate())
	d := m.Dequantize()
	for i := range w {
		s := m.Scale(i/cols, (i%cols)/32)
		require.LessOrEqual(t, abs32(d[i]-w[i]), 2.5*s, "mxfp4 at %d: w=%g deq=%g scale=%g", i, w[i], d[i], s)
	}
	require.Equal(t, float32(0), d[3])
	// A group on the grid whose largest magnitude is 6·2^e survives exactly.
	grid := make([]float32, 32)
	for i := range grid {
		grid[i] = e2m1Values[i%16] * 0.25
	}
	m2, err := QuantizeMXFP4(grid, 1, 32)
	require.NoError(t, err)
	require.Equal(t, grid, m2.Dequantize())
}

func TestMXFP4NibbleOrder(t *testing.T) {
	// Low nibble is the even column (gpt-oss blocks and MLX mxfp4 agree).
	m := &Matrix{Format: Format{Kind: MXFP4, Bits: 4, GroupSize: 32, Scale: ScaleE8M0}, Rows: 1, Cols: 32,
		Data: make([]byte, 16), Scales: []byte{128}}
	m.Data[0] = 0x72 // col 0 = code 2 (1.0), col 1 = code 7 (6.0)
	d := m.Dequantize()
	require.Equal(t, float32(2), d[0])
	require.Equal(t, float32(12), d[1])
}

func TestPlainFormats(t *testing.T) {
	w := []float32{1, -2.5, 3.25, 0.1}
	for _, k := range []Kind{F32, F16, BF16} {
		m := FromPlain(k, w, 2, 2)
		require.NoError(t, m.Validate())
		d := m.Dequantize()
		for i := range w {
			require.InDelta(t, w[i], d[i], 0.001, "%s", k)
		}
	}
}

func TestRowRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	w := randMatrix(rng, 6, 64)
	m, err := QuantizeAffine(w, 6, 64, 4, 32, ScaleBF16)
	require.NoError(t, err)
	sub := m.RowRange(2, 5)
	require.NoError(t, sub.Validate())
	require.Equal(t, m.Dequantize()[2*64:5*64], sub.Dequantize())
}

func TestValidateRejects(t *testing.T) {
	good := func() *Matrix {
		m, _ := QuantizeAffine(make([]float32, 2*64), 2, 64, 4, 32, ScaleBF16)
		return m
	}
	tests := map[string]func(m *Matrix){
		"short data":     func(m *Matrix) { m.Data = m.Data[:1] },
		"short scales":   func(m *Matrix) { m.Scales = m.Scales[:1] },
		"missing biases": func(m *Matrix) { m.Biases = nil },
		"bad bits":       func(m *Matrix) { m.Format.Bits = 7 },
		"bad group":      func(m *Matrix) { m.Format.GroupSize = 48 },
		"zero rows":      func(m *Matrix) { m.Rows = 0 },
		"e8m0 affine":    func(m *Matrix) { m.Format.Scale = ScaleE8M0 },
	}
	for name, breakIt := range tests {
		t.Run(name, func(t *testing.T) {
			m := good()
			breakIt(m)
			require.ErrorIs(t, m.Validate(), ErrFormat)
		})
	}
}
