package model_test

import (
	"testing"

	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/stretchr/testify/require"
)

// WeightBytes counts codes, scales and (affine) biases as stored.
func TestWeightBytes(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	for _, c := range []struct {
		name       string
		f          quant.Format
		rows, cols int
		want       int64
	}{
		{"f32", quant.Format{Kind: quant.F32}, 4, 8, 4 * 8 * 4},
		{"bf16", quant.Format{Kind: quant.BF16}, 4, 8, 4 * 8 * 2},
		// 4-bit codes, then a bf16 scale and bias per group of 64.
		{"affine4", quant.Format{Kind: quant.Affine, Bits: 4, GroupSize: 64, Scale: quant.ScaleBF16}, 2, 128, 2*128/2 + 2*2*2 + 2*2*2},
		// Two codes a byte and one e8m0 scale per 32.
		{"mxfp4", quant.Format{Kind: quant.MXFP4, Bits: 4, GroupSize: 32, Scale: quant.ScaleE8M0}, 2, 64, 2*64/2 + 2*2},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := &quant.Matrix{Format: c.f, Rows: c.rows, Cols: c.cols, Data: make([]byte, c.rows*c.f.RowBytes(c.cols))}
			if c.f.Quantized() {
				m.Scales = make([]byte, c.rows*(c.cols/c.f.GroupSize)*c.f.Scale.Size())
				if c.f.Kind == quant.Affine {
					m.Biases = make([]byte, len(m.Scales))
				}
			}
			w, err := b.Bind(m)
			require.NoError(t, err)
			require.Equal(t, c.want, model.WeightBytes(w))
			require.Equal(t, 2*c.want, model.LinearBytes(&model.Linear{W: w}, nil, &model.Linear{W: w}), "nil layers count nothing")
		})
	}
}
