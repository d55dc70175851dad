package quant

import (
	"testing"
)

// FuzzMatrix feeds arbitrary shapes, formats and bytes (as a hostile
// checkpoint would) through Validate and, when they pass, the dequantizer,
// which must not panic.
func FuzzMatrix(f *testing.F) {
	f.Add(uint8(4), uint8(2), uint8(8), uint16(1), uint16(64), uint8(3), []byte{1, 2, 3})
	f.Add(uint8(5), uint8(4), uint8(32), uint16(2), uint16(32), uint8(4), make([]byte, 40))
	f.Add(uint8(1), uint8(0), uint8(0), uint16(2), uint16(2), uint8(0), make([]byte, 16))
	f.Fuzz(func(t *testing.T, kind, bits, group uint8, rows, cols uint16, scale uint8, data []byte) {
		r, c := int(rows%64), int(cols%512)
		m := &Matrix{
			Format: Format{Kind: Kind(kind % 7), Bits: int(bits % 10), GroupSize: int(group), Scale: ScaleType(scale % 6)},
			Rows:   r, Cols: c,
		}
		// Split the bytes among data, scales and biases in the sizes the
		// format claims, when there are enough; otherwise hand them over raw.
		if err := m.Format.Validate(c); err == nil && r > 0 {
			need := r * m.Format.RowBytes(c)
			if len(data) >= need {
				m.Data, data = data[:need], data[need:]
				if m.Format.Quantized() {
					sb := r * (c / m.Format.GroupSize) * m.Format.Scale.Size()
					if len(data) >= sb {
						m.Scales, data = data[:sb], data[sb:]
					}
					if len(data) >= sb {
						m.Biases = data[:sb]
					}
				}
			}
		} else {
			m.Data = data
		}
		if m.Validate() != nil {
			return
		}
		out := make([]float32, m.Cols)
		for i := 0; i < m.Rows; i++ {
			m.DequantRow(i, out)
		}
	})
}
