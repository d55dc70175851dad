package quant

import (
	"encoding/binary"
	"fmt"
	"math"
)

// QuantizeAffine quantizes a row-major rows×cols f32 matrix to MLX affine
// form with the given bits and group size, following MLX's quantizer: per
// group the scale spans [min, max], the edge with the larger magnitude is
// kept exact and the scale is nudged so that 0.0 is representable; scales
// and biases are then stored as scaleType. The codes are computed from the
// f32 scale and bias, as MLX does, before they are narrowed.
func QuantizeAffine(w []float32, rows, cols, bits, group int, scaleType ScaleType) (*Matrix, error) {
	f := Format{Kind: Affine, Bits: bits, GroupSize: group, Scale: scaleType}
	if err := f.Validate(cols); err != nil {
		return nil, err
	}
	if len(w) != rows*cols {
		return nil, fmt.Errorf("quant: %d values for a %d×%d matrix", len(w), rows, cols)
	}
	groups := cols / group
	m := &Matrix{Format: f, Rows: rows, Cols: cols,
		Scales: make([]byte, rows*groups*scaleType.Size()),
		Biases: make([]byte, rows*groups*scaleType.Size()),
	}
	levels := float32(int(1)<<bits - 1)
	codes := make([]uint8, rows*cols)
	for r := 0; r < rows; r++ {
		for g := 0; g < groups; g++ {
			vals := w[r*cols+g*group : r*cols+(g+1)*group]
			mn, mx := vals[0], vals[0]
			for _, v := range vals {
				mn = min(mn, v)
				mx = max(mx, v)
			}
			s := max((mx-mn)/levels, 1e-7)
			edge := mn
			if !(abs32(mn) > abs32(mx)) {
				s, edge = -s, mx
			}
			var bias float32
			if q0 := float32(math.RoundToEven(float64(edge / s))); q0 != 0 {
				s, bias = edge/q0, edge
			}
			for i, v := range vals {
				q := float32(math.RoundToEven(float64((v - bias) / s)))
				codes[r*cols+g*group+i] = uint8(min(max(q, 0), levels))
			}
			putScale(m.Scales, scaleType, r*groups+g, s)
			putScale(m.Biases, scaleType, r*groups+g, bias)
		}
	}
	data, err := PackBits(codes, bits)
	if err != nil {
		return nil, err
	}
	m.Data = data
	return m, nil
}

// QuantizeMXFP4 quantizes a row-major rows×cols f32 matrix to MXFP4 with
// groups of 32, following MLX's quantizer: the shared exponent is
// round(log2(amax/6)) and elements round to the nearest E2M1 value, ties to
// the even code.
func QuantizeMXFP4(w []float32, rows, cols int) (*Matrix, error) {
	f := Format{Kind: MXFP4, Bits: 4, GroupSize: 32, Scale: ScaleE8M0}
	if err := f.Validate(cols); err != nil {
		return nil, err
	}
	if len(w) != rows*cols {
		return nil, fmt.Errorf("quant: %d values for a %d×%d matrix", len(w), rows, cols)
	}
	groups := cols / 32
	m := &Matrix{Format: f, Rows: rows, Cols: cols, Data: make([]byte, rows*cols/2), Scales: make([]byte, rows*groups)}
	for r := 0; r < rows; r++ {
		for g := 0; g < groups; g++ {
			vals := w[r*cols+g*32 : r*cols+(g+1)*32]
			var amax float32
			for _, v := range vals {
				amax = max(amax, abs32(v))
			}
			e := 0
			if amax > 0 {
				e = int(math.Round(math.Log2(float64(amax) / 6)))
			}
			e = min(max(e, -127), 127)
			m.Scales[r*groups+g] = uint8(e + 127)
			inv := float32(math.Ldexp(1, -e))
			for i, v := range vals {
				c := nearestE2M1(v * inv)
				idx := r*cols + g*32 + i
				m.Data[idx/2] |= c << (4 * (idx & 1))
			}
		}
	}
	return m, nil
}

// nearestE2M1 rounds x to the nearest E2M1 code, ties to the even code,
// saturating at ±6.
func nearestE2M1(x float32) uint8 {
	var sign uint8
	if math.Signbit(float64(x)) {
		sign, x = 8, -x
	}
	best, bestErr := uint8(0), float32(math.Inf(1))
	for c := uint8(0); c < 8; c++ {
		d := abs32(x - e2m1Values[c])
		if d < bestErr || (d == bestErr && c&1 == 0) {
			best, bestErr = c, d
		}
	}
	return sign | best
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

func putScale(b []byte, t ScaleType, i int, v float32) {
	switch t {
	case ScaleF32:
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	case ScaleF16:
		binary.LittleEndian.PutUint16(b[2*i:], F32ToF16(v))
	case ScaleBF16:
		binary.LittleEndian.PutUint16(b[2*i:], F32ToBF16(v))
	}
}

// FromPlain wraps plain f32 values as a Matrix stored in kind (F32, F16 or
// BF16), encoding them.
func FromPlain(kind Kind, w []float32, rows, cols int) *Matrix {
	return &Matrix{Format: Format{Kind: kind}, Rows: rows, Cols: cols, Data: Encode(kind, w)}
}
