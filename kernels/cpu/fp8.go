package cpu

import "github.com/maniac-ai/mach/pkg/quant"

// FP8 (E4M3) weights, DeepSeek's attention and shared-expert format, are
// computed on as stored: each weight row is decoded through a 256-entry
// table into scratch and fed to the same f32 dot kernels as every other
// format, so batched and single rows give the same bits. The decode is
// exactly quant.Matrix.DequantRow's: float32(e4m3(code))·float32(scale).

var e4m3 = quant.E4M3Table()

// dequantFP8Row decodes row r of the FP8 matrix m into dst.
func dequantFP8Row(m *quant.Matrix, r int, dst []float32) {
	cols, g := m.Cols, m.Format.GroupSize
	codes := m.Data[r*cols : (r+1)*cols]
	groups := cols / g
	for j := 0; j < groups; j++ {
		s := m.Scale(r, j)
		in, out := codes[j*g:(j+1)*g], dst[j*g:(j+1)*g]
		for i, c := range in {
			out[i] = e4m3[c] * s
		}
	}
}
