package quant

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestE4M3Exhaustive(t *testing.T) {
	// Known values of the OCP E4M3 ("fn") encoding.
	for c, want := range map[uint8]float32{
		0x00: 0, 0x01: 1.0 / 512, 0x07: 7.0 / 512, 0x08: 1.0 / 64, 0x38: 1, 0x39: 1.125,
		0x40: 2, 0x7e: 448, 0x80: 0, 0xb8: -1, 0xfe: -448,
	} {
		require.Equal(t, want, E4M3ToF32(c), "code %#x", c)
	}
	require.True(t, math.IsNaN(float64(E4M3ToF32(0x7f))))
	require.True(t, math.IsNaN(float64(E4M3ToF32(0xff))))
	require.True(t, math.Signbit(float64(E4M3ToF32(0x80))), "0x80 is -0")
	// Every finite code survives decode → encode.
	for c := 0; c < 256; c++ {
		if c&0x7f == 0x7f {
			continue
		}
		require.Equal(t, uint8(c), F32ToE4M3(E4M3ToF32(uint8(c))), "code %#x", c)
	}
}

func TestF32ToE4M3Rounding(t *testing.T) {
	for _, tc := range []struct {
		x    float32
		want uint8
	}{
		{1.0625, 0x38},    // halfway 1 and 1.125: even mantissa (1.0)
		{1.1875, 0x3a},    // halfway 1.125 and 1.25: even (1.25)
		{1.07, 0x39},      // nearer 1.125
		{1.5 / 512, 0x02}, // halfway subnormals 1/512 and 2/512: even
		{0.4 / 512, 0x00}, // below half the smallest subnormal
		{0.6 / 512, 0x01}, // above it
		{1000, 0x7e},      // saturates
		{-1000, 0xfe},     // saturates
		{464, 0x7e},       // halfway 448 and the absent 480: saturates
		{float32(math.Inf(1)), 0x7e},
		{float32(math.Copysign(0, -1)), 0x80},
	} {
		require.Equal(t, tc.want, F32ToE4M3(tc.x), "%g", tc.x)
	}
	require.Equal(t, uint8(0x7f), F32ToE4M3(float32(math.NaN())))
}

func TestFP8BlockRoundTripErrorBound(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 1))
	for _, sh := range [][2]int{{32, 64}, {200, 300}, {256, 128}, {1, 7 * 4}} {
		rows, cols := sh[0], sh[1]
		w := randMatrix(r, rows, cols)
		codes, scales, err := QuantizeFP8Blocks(w, rows, cols, 128, 128)
		require.NoError(t, err)
		m, err := FromBlockScaled(codes, rows, cols, scales, ScaleE8M0, 128, 128)
		require.NoError(t, err)
		require.Equal(t, BlockGroup(cols, 128), m.Format.GroupSize)
		got := m.Dequantize()
		tc := (cols + 127) / 128
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				s := E8M0ToF32(scales[(i/128)*tc+j/128])
				want := E4M3ToF32(codes[i*cols+j]) * s
				require.Equal(t, want, got[i*cols+j], "(%d,%d): code×tile scale", i, j)
				// E4M3 keeps 3 mantissa bits: relative error ≤ 2^-4 for
				// normal values, absolute ≤ 2^-10·s for subnormal ones.
				e := math.Abs(float64(got[i*cols+j] - w[i*cols+j]))
				require.LessOrEqual(t, e, math.Abs(float64(w[i*cols+j]))/16+float64(s)/1024+1e-30, "(%d,%d)", i, j)
			}
		}
	}
}

func TestFromBlockScaledRowRanges(t *testing.T) {
	// 300 rows in tiles of 128: a row range that starts inside a tile (as
	// the groups of DeepSeek's grouped output projection do) keeps each
	// row's tile scale.
	r := rand.New(rand.NewPCG(9, 1))
	rows, cols := 300, 256
	w := randMatrix(r, rows, cols)
	for i := range w {
		w[i] *= float32(1 + i/(cols*100)) // different magnitudes per tile row
	}
	codes, scales, err := QuantizeFP8Blocks(w, rows, cols, 128, 128)
	require.NoError(t, err)
	for _, st := range []ScaleType{ScaleE8M0, ScaleF32} {
		sb := scales
		if st == ScaleF32 {
			f := make([]float32, len(scales))
			for i, s := range scales {
				f[i] = E8M0ToF32(s)
			}
			sb = F32Bytes(f)
		}
		m, err := FromBlockScaled(codes, rows, cols, sb, st, 128, 128)
		require.NoError(t, err)
		full := m.Dequantize()
		part := m.RowRange(100, 250)
		require.NoError(t, part.Validate())
		got := part.Dequantize()
		require.Equal(t, full[100*cols:250*cols], got, "%s", st)
	}
}

func TestFromBlockScaledRejects(t *testing.T) {
	codes := make([]byte, 4*64)
	for _, tc := range []struct {
		name   string
		rows   int
		scales []byte
		st     ScaleType
	}{
		{"scales too short", 4, nil, ScaleE8M0},
		{"scales too long", 4, make([]byte, 2), ScaleE8M0},
		{"codes mismatch", 5, make([]byte, 1), ScaleE8M0},
		{"bad scale type", 4, make([]byte, 2), ScaleF16},
		{"no scale type", 4, make([]byte, 1), ScaleNone},
	} {
		_, err := FromBlockScaled(codes, tc.rows, 64, tc.scales, tc.st, 128, 128)
		require.ErrorIs(t, err, ErrFormat, tc.name)
	}
	_, err := FromBlockScaled(codes, 4, 64, make([]byte, 1), ScaleE8M0, 0, 128)
	require.ErrorIs(t, err, ErrFormat)
}

func TestFP8Validate(t *testing.T) {
	ok := Format{Kind: FP8, Bits: 8, GroupSize: 128, Scale: ScaleE8M0}
	require.NoError(t, ok.Validate(256))
	require.Equal(t, "fp8/g128(e8m0)", ok.String())
	for _, f := range []Format{
		{Kind: FP8, Bits: 4, GroupSize: 128, Scale: ScaleE8M0},
		{Kind: FP8, Bits: 8, GroupSize: 128, Scale: ScaleNone},
		{Kind: FP8, Bits: 8, GroupSize: 100, Scale: ScaleE8M0},
		{Kind: FP8, Bits: 8, GroupSize: 0, Scale: ScaleF32},
	} {
		require.ErrorIs(t, f.Validate(256), ErrFormat, "%+v", f)
	}
}

// FuzzFromBlockScaled builds FP8 matrices from hostile shapes and bytes (a
// checkpoint's weight and scale tensors); it must reject or decode, never
// panic.
func FuzzFromBlockScaled(f *testing.F) {
	f.Add(uint16(4), uint16(64), uint8(128), uint8(128), uint8(0), make([]byte, 4*64+1))
	f.Add(uint16(130), uint16(8), uint8(128), uint8(4), uint8(1), make([]byte, 130*8+2*2*4))
	f.Add(uint16(1), uint16(1), uint8(1), uint8(1), uint8(0), []byte{0x7f, 200})
	f.Fuzz(func(t *testing.T, rows, cols uint16, br, bc, st uint8, data []byte) {
		r, c := int(rows%512), int(cols%512)
		n := r * c
		if n > len(data) {
			return
		}
		scaleType := []ScaleType{ScaleE8M0, ScaleF32, ScaleBF16, ScaleF16, ScaleNone}[st%5]
		m, err := FromBlockScaled(data[:n], r, c, data[n:], scaleType, int(br), int(bc))
		if err != nil {
			return
		}
		out := make([]float32, m.Cols)
		for i := 0; i < m.Rows; i++ {
			m.DequantRow(i, out)
		}
	})
}
