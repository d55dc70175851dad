package quant

import (
	"fmt"
	"math"
)

// FP8 is DeepSeek's (and Hugging Face's "fp8" quant_method) block-scaled
// format: one E4M3 byte per weight and a scale per tile of the [out, in]
// matrix, 128×128 in every released checkpoint (DeepSeek-V3/V4
// weight.scale as E8M0 or f32, Hugging Face weight_scale_inv as f32; both
// mean w = e4m3(code)·scale).
//
// A Matrix holds FP8 as per-row groups: GroupSize consecutive columns of a
// row share one scale, stored [Rows, Cols/GroupSize] like the other
// quantized kinds, so row ranges (experts, the groups of DeepSeek's grouped
// output projection) need nothing special. FromBlockScaled builds that form
// from the checkpoint's 2-D tile scales by repeating each tile's scale for
// its rows; the codes are used where they lie.

// e4m3Values decodes the E4M3 ("fn": bias 7, no infinities, max 448) byte
// of FP8 weights; 0x7f and 0xff are NaN.
var e4m3Values = func() (t [256]float32) {
	for c := range t {
		e, m := (c>>3)&15, c&7
		var v float64
		switch {
		case c&0x7f == 0x7f:
			v = math.NaN()
		case e == 0:
			v = math.Ldexp(float64(m), -9) // subnormal: m/8 · 2^-6
		default:
			v = math.Ldexp(float64(8+m), e-10) // (1 + m/8) · 2^(e-7)
		}
		if c&0x80 != 0 {
			v = -v
		}
		t[c] = float32(v)
	}
	return t
}()

// E4M3ToF32 decodes one E4M3 byte.
func E4M3ToF32(c uint8) float32 { return e4m3Values[c] }

// E4M3Table returns the decoding table of E4M3 bytes (for kernels that
// decode with a lookup).
func E4M3Table() *[256]float32 { return &e4m3Values }

// F32ToE4M3 rounds x to the nearest E4M3 value, ties to the even code,
// saturating at ±448 (torch's float8_e4m3fn conversion of a finite value).
// NaN stays NaN.
func F32ToE4M3(x float32) uint8 {
	if x != x {
		return 0x7f
	}
	var sign uint8
	if math.Signbit(float64(x)) {
		sign, x = 0x80, -x
	}
	// The positive codes 0…0x7e increase with their value: binary search
	// for the first at or above x, then pick the nearer neighbour.
	lo, hi := 0, 0x7e
	if x >= e4m3Values[hi] {
		return sign | uint8(hi)
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if e4m3Values[mid] < x {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return sign
	}
	below, above := x-e4m3Values[lo-1], e4m3Values[lo]-x
	if below < above || (below == above && (lo-1)&1 == 0) {
		return sign | uint8(lo-1)
	}
	return sign | uint8(lo)
}

func validateFP8(f Format) error {
	if f.Bits != 8 {
		return fmt.Errorf("%w: fp8 with %d bits", ErrFormat, f.Bits)
	}
	switch f.Scale {
	case ScaleE8M0, ScaleF32, ScaleBF16, ScaleF16:
		return nil
	}
	return fmt.Errorf("%w: fp8 scales of type %s", ErrFormat, f.Scale)
}

// BlockGroup is the per-row group size FromBlockScaled uses for tiles
// blockCols wide over rows of cols: the largest size that divides both, so
// a group never straddles two tiles.
func BlockGroup(cols, blockCols int) int {
	a, b := cols, blockCols
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// FromBlockScaled describes an FP8 weight stored as codes (rows×cols E4M3
// bytes, used in place) with tile scales (ceil(rows/blockRows) ×
// ceil(cols/blockCols) elements of st, the checkpoint's scale tensor) as a
// Matrix whose per-row group scales are copied out of the tiles.
func FromBlockScaled(codes []byte, rows, cols int, scales []byte, st ScaleType, blockRows, blockCols int) (*Matrix, error) {
	if rows <= 0 || cols <= 0 || blockRows <= 0 || blockCols <= 0 {
		return nil, fmt.Errorf("%w: fp8 %d×%d in %d×%d tiles", ErrFormat, rows, cols, blockRows, blockCols)
	}
	if len(codes) != rows*cols {
		return nil, fmt.Errorf("%w: fp8 %d×%d needs %d code bytes, have %d", ErrFormat, rows, cols, rows*cols, len(codes))
	}
	size := st.Size()
	if size == 0 || st == ScaleF16 {
		return nil, fmt.Errorf("%w: fp8 tile scales of type %s", ErrFormat, st)
	}
	tr, tc := (rows+blockRows-1)/blockRows, (cols+blockCols-1)/blockCols
	if len(scales) != tr*tc*size {
		return nil, fmt.Errorf("%w: fp8 %d×%d in %d×%d tiles needs %d×%d scales (%d bytes), have %d bytes",
			ErrFormat, rows, cols, blockRows, blockCols, tr, tc, tr*tc*size, len(scales))
	}
	g := BlockGroup(cols, blockCols)
	groups := cols / g
	out := make([]byte, rows*groups*size)
	for r := 0; r < rows; r++ {
		src := scales[(r/blockRows)*tc*size:]
		dst := out[r*groups*size:]
		for j := 0; j < groups; j++ {
			t := j * g / blockCols
			copy(dst[j*size:(j+1)*size], src[t*size:(t+1)*size])
		}
	}
	m := &Matrix{Format: Format{Kind: FP8, Bits: 8, GroupSize: g, Scale: st}, Rows: rows, Cols: cols, Data: codes, Scales: out}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// QuantizeFP8Blocks quantizes a row-major rows×cols f32 matrix the way
// DeepSeek's checkpoints are made: per blockRows×blockCols tile, the scale
// is the power of two 2^ceil(log2(amax/448)) (E8M0, "ue8m0"), and each value
// rounds to the nearest E4M3 of value/scale. It returns the codes and the
// tile scales as the checkpoint stores them.
func QuantizeFP8Blocks(w []float32, rows, cols, blockRows, blockCols int) (codes, scales []byte, err error) {
	if len(w) != rows*cols || rows <= 0 || cols <= 0 || blockRows <= 0 || blockCols <= 0 {
		return nil, nil, fmt.Errorf("quant: %d values for a %d×%d matrix in %d×%d tiles", len(w), rows, cols, blockRows, blockCols)
	}
	tr, tc := (rows+blockRows-1)/blockRows, (cols+blockCols-1)/blockCols
	codes, scales = make([]byte, rows*cols), make([]byte, tr*tc)
	for a := 0; a < tr; a++ {
		for b := 0; b < tc; b++ {
			r0, r1, c0, c1 := a*blockRows, min((a+1)*blockRows, rows), b*blockCols, min((b+1)*blockCols, cols)
			var amax float32
			for r := r0; r < r1; r++ {
				for _, v := range w[r*cols+c0 : r*cols+c1] {
					amax = max(amax, abs32(v))
				}
			}
			e := -127
			if amax > 0 {
				e = int(math.Ceil(math.Log2(float64(amax) / 448)))
			}
			e = min(max(e, -127), 127)
			scales[a*tc+b] = uint8(e + 127)
			inv := math.Ldexp(1, -e)
			for r := r0; r < r1; r++ {
				for c := c0; c < c1; c++ {
					codes[r*cols+c] = F32ToE4M3(float32(float64(w[r*cols+c]) * inv))
				}
			}
		}
	}
	return codes, scales, nil
}
