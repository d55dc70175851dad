// Package quant holds the weight storage formats mach computes with and
// their codecs: plain f32/f16/bf16, MLX affine (2–8 bits, any group size,
// scale·q + bias per group) and MXFP4 (E2M1 codes with an E8M0 scale per
// 32, as MLX's mxfp4 mode and gpt-oss's blocks/scales store it). A Matrix
// describes a 2-D weight whose bytes stay where they are (usually in a
// memory-mapped checkpoint); the reference dequantizers here define the
// numerics every compute kernel must reproduce.
package quant

import (
	"errors"
	"fmt"
)

// Kind is a storage family.
type Kind uint8

// The storage families.
const (
	F32    Kind = iota + 1 // IEEE binary32
	F16                    // IEEE binary16
	BF16                   // bfloat16
	Affine                 // MLX affine: w = scale·q + bias per group
	MXFP4                  // E2M1 codes, E8M0 scale per 32 values
	FP8                    // E4M3 codes, a scale per group of a row (see fp8.go)
)

func (k Kind) String() string {
	switch k {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case BF16:
		return "bf16"
	case Affine:
		return "affine"
	case MXFP4:
		return "mxfp4"
	case FP8:
		return "fp8"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ScaleType is the element type of the per-group scales and biases.
type ScaleType uint8

// The scale element types.
const (
	ScaleNone ScaleType = iota
	ScaleF32
	ScaleF16
	ScaleBF16
	ScaleE8M0 // one byte, 2^(s-127)
)

// Size returns the bytes per scale element.
func (s ScaleType) Size() int {
	switch s {
	case ScaleF32:
		return 4
	case ScaleF16, ScaleBF16:
		return 2
	case ScaleE8M0:
		return 1
	}
	return 0
}

func (s ScaleType) String() string {
	switch s {
	case ScaleF32:
		return "f32"
	case ScaleF16:
		return "f16"
	case ScaleBF16:
		return "bf16"
	case ScaleE8M0:
		return "e8m0"
	}
	return "none"
}

// Format is a weight storage format.
type Format struct {
	Kind Kind
	// Bits per element for Affine (2, 3, 4, 5, 6 or 8) and MXFP4 (4).
	Bits int
	// GroupSize is the number of consecutive elements of a row sharing one
	// scale (Affine, MXFP4).
	GroupSize int
	// Scale is the scale (and bias) element type for Affine and MXFP4.
	Scale ScaleType
}

func (f Format) String() string {
	switch f.Kind {
	case Affine:
		return fmt.Sprintf("affine%d/g%d(%s)", f.Bits, f.GroupSize, f.Scale)
	case MXFP4:
		return fmt.Sprintf("mxfp4/g%d", f.GroupSize)
	case FP8:
		return fmt.Sprintf("fp8/g%d(%s)", f.GroupSize, f.Scale)
	}
	return f.Kind.String()
}

// Quantized reports whether f stores codes with per-group scales.
func (f Format) Quantized() bool { return f.Kind == Affine || f.Kind == MXFP4 || f.Kind == FP8 }

// ErrFormat is wrapped by errors about malformed or unsupported formats.
var ErrFormat = errors.New("invalid weight format")

// Validate checks that f is a format this package can decode for rows of
// cols elements.
func (f Format) Validate(cols int) error {
	switch f.Kind {
	case F32, F16, BF16:
		return nil
	case Affine:
		switch f.Bits {
		case 2, 3, 4, 5, 6, 8:
		default:
			return fmt.Errorf("%w: affine with %d bits (want 2, 3, 4, 5, 6 or 8)", ErrFormat, f.Bits)
		}
		switch f.Scale {
		case ScaleF32, ScaleF16, ScaleBF16:
		default:
			return fmt.Errorf("%w: affine scales of type %s", ErrFormat, f.Scale)
		}
	case MXFP4:
		if f.Bits != 4 {
			return fmt.Errorf("%w: mxfp4 with %d bits", ErrFormat, f.Bits)
		}
		if f.Scale != ScaleE8M0 {
			return fmt.Errorf("%w: mxfp4 scales of type %s (want e8m0)", ErrFormat, f.Scale)
		}
	case FP8:
		if err := validateFP8(f); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrFormat, f.Kind)
	}
	if f.GroupSize <= 0 || cols%f.GroupSize != 0 {
		return fmt.Errorf("%w: %d columns are not a whole number of groups of %d", ErrFormat, cols, f.GroupSize)
	}
	if cols*f.Bits%32 != 0 {
		return fmt.Errorf("%w: a row of %d %d-bit codes is not a whole number of 32-bit words", ErrFormat, cols, f.Bits)
	}
	return nil
}

// RowBytes is the size in bytes of one row's values or codes.
func (f Format) RowBytes(cols int) int {
	switch f.Kind {
	case F32:
		return cols * 4
	case F16, BF16:
		return cols * 2
	}
	return cols * f.Bits / 8
}

// Matrix is a 2-D weight of Rows × Cols (PyTorch [out, in]) stored in
// Format. The byte slices are row-major and usually alias a memory-mapped
// file; nothing here copies them.
type Matrix struct {
	Format     Format
	Rows, Cols int
	// Data holds the values (plain kinds) or the packed codes.
	Data []byte
	// Scales and Biases hold [Rows, Cols/GroupSize] elements of
	// Format.Scale; Biases only for Affine.
	Scales []byte
	Biases []byte
}

// Groups returns the number of scale groups per row.
func (m *Matrix) Groups() int {
	if !m.Format.Quantized() {
		return 0
	}
	return m.Cols / m.Format.GroupSize
}

// Validate checks that the byte slices have exactly the sizes the format
// and shape need.
func (m *Matrix) Validate() error {
	if m.Rows <= 0 || m.Cols <= 0 {
		return fmt.Errorf("%w: shape %d×%d", ErrFormat, m.Rows, m.Cols)
	}
	if err := m.Format.Validate(m.Cols); err != nil {
		return err
	}
	if want := m.Rows * m.Format.RowBytes(m.Cols); len(m.Data) != want {
		return fmt.Errorf("%w: %s %d×%d needs %d data bytes, have %d", ErrFormat, m.Format, m.Rows, m.Cols, want, len(m.Data))
	}
	if !m.Format.Quantized() {
		return nil
	}
	want := m.Rows * m.Groups() * m.Format.Scale.Size()
	if len(m.Scales) != want {
		return fmt.Errorf("%w: %s %d×%d needs %d scale bytes, have %d", ErrFormat, m.Format, m.Rows, m.Cols, want, len(m.Scales))
	}
	if m.Format.Kind == Affine && len(m.Biases) != want {
		return fmt.Errorf("%w: %s %d×%d needs %d bias bytes, have %d", ErrFormat, m.Format, m.Rows, m.Cols, want, len(m.Biases))
	}
	return nil
}

// Bytes returns the total size of the stored weight.
func (m *Matrix) Bytes() int { return len(m.Data) + len(m.Scales) + len(m.Biases) }

// RowRange returns rows [a, b) as a Matrix sharing m's bytes.
func (m *Matrix) RowRange(a, b int) *Matrix {
	rb := m.Format.RowBytes(m.Cols)
	out := &Matrix{Format: m.Format, Rows: b - a, Cols: m.Cols, Data: m.Data[a*rb : b*rb : b*rb]}
	if m.Format.Quantized() {
		sb := m.Groups() * m.Format.Scale.Size()
		out.Scales = m.Scales[a*sb : b*sb : b*sb]
		if m.Biases != nil {
			out.Biases = m.Biases[a*sb : b*sb : b*sb]
		}
	}
	return out
}

// Scale returns the scale of group g of row r as f32.
func (m *Matrix) Scale(r, g int) float32 {
	return readScale(m.Scales, m.Format.Scale, r*m.Groups()+g)
}

// Bias returns the bias of group g of row r as f32 (Affine only).
func (m *Matrix) Bias(r, g int) float32 {
	return readScale(m.Biases, m.Format.Scale, r*m.Groups()+g)
}

func readScale(b []byte, t ScaleType, i int) float32 {
	switch t {
	case ScaleF32:
		return f32At(b, i)
	case ScaleF16:
		return F16ToF32(u16At(b, i))
	case ScaleBF16:
		return BF16ToF32(u16At(b, i))
	case ScaleE8M0:
		return E8M0ToF32(b[i])
	}
	return 0
}

// DequantRow writes row r as f32 into dst[:Cols]. It is the reference the
// kernels must reproduce: affine values are computed as float32(scale·q)
// then + bias, each step rounded to f32 (as torch does on dequantized
// tensors); MXFP4 values as e2m1(code)·2^(e-127), which is exact; FP8 as
// float32(e4m3(code))·float32(scale), one f32 product.
func (m *Matrix) DequantRow(r int, dst []float32) {
	dst = dst[:m.Cols]
	rb := m.Format.RowBytes(m.Cols)
	row := m.Data[r*rb : (r+1)*rb]
	switch m.Format.Kind {
	case F32:
		for i := range dst {
			dst[i] = f32At(row, i)
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToF32(u16At(row, i))
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToF32(u16At(row, i))
		}
	case Affine:
		g := m.Format.GroupSize
		var codes [256]uint8
		for gi := 0; gi < m.Groups(); gi++ {
			s, b := m.Scale(r, gi), m.Bias(r, gi)
			for c := 0; c < g; c += len(codes) {
				n := min(len(codes), g-c)
				UnpackBits(row, m.Format.Bits, gi*g+c, codes[:n])
				out := dst[gi*g+c : gi*g+c+n]
				for i, q := range codes[:n] {
					out[i] = float32(s*float32(q)) + b
				}
			}
		}
	case MXFP4:
		g := m.Format.GroupSize
		for gi := 0; gi < m.Groups(); gi++ {
			s := m.Scale(r, gi)
			for i := gi * g; i < (gi+1)*g; i++ {
				dst[i] = e2m1Values[row[i/2]>>(4*(i&1))&15] * s
			}
		}
	case FP8:
		g := m.Format.GroupSize
		for gi := 0; gi < m.Groups(); gi++ {
			s := m.Scale(r, gi)
			for i := gi * g; i < (gi+1)*g; i++ {
				dst[i] = e4m3Values[row[i]] * s
			}
		}
	}
}

// Dequantize returns the whole matrix as row-major f32.
func (m *Matrix) Dequantize() []float32 {
	out := make([]float32, m.Rows*m.Cols)
	for r := 0; r < m.Rows; r++ {
		m.DequantRow(r, out[r*m.Cols:(r+1)*m.Cols])
	}
	return out
}
