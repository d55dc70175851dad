package quant

import "math"

// BF16ToF32 widens a bfloat16 (the top 16 bits of an IEEE binary32).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 narrows f to bfloat16 with round-to-nearest-even, as torch and
// MLX do. NaNs stay NaN.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep it quiet and non-zero
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToF32 widens an IEEE binary16.
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: value = mant · 2^-24, exactly representable in f32.
	f := float32(mant) * (1.0 / (1 << 24))
	if sign != 0 {
		f = -f
	}
	return f
}

// F32ToF16 narrows f to IEEE binary16 with round-to-nearest-even; values
// beyond the f16 range become ±inf.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff { // inf or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal or zero in f16.
		if e < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		rest := mant & (1<<shift - 1)
		m := mant >> shift
		if rest > half || (rest == half && m&1 == 1) {
			m++
		}
		return sign | uint16(m)
	}
	m := mant >> 13
	rest := mant & 0x1fff
	out := uint32(e)<<10 | m
	if rest > 0x1000 || (rest == 0x1000 && m&1 == 1) {
		out++ // may carry into the exponent, which is the right answer
	}
	return sign | uint16(out)
}

// e2m1Values decodes the 4-bit E2M1 codes of MXFP4 (bit 3 is the sign).
var e2m1Values = [16]float32{0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6}

// E2M1ToF32 decodes one 4-bit E2M1 code.
func E2M1ToF32(code uint8) float32 { return e2m1Values[code&15] }

// E8M0ToF32 decodes an E8M0 scale byte: 2^(s-127). Like MLX, 0 maps to
// 2^-127 and 255 to +inf.
func E8M0ToF32(s uint8) float32 {
	if s == 255 {
		return float32(math.Inf(1))
	}
	if s == 0 {
		return math.Float32frombits(0x00400000) // 2^-127, a subnormal
	}
	return math.Float32frombits(uint32(s) << 23)
}
