package model

import (
	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/quant"
)

// WeightBytes is the stored size of a bound weight: its codes or values,
// plus the scales (and, for affine formats, the biases) of a quantized one.
// Models count what a token reads with it (Info.ActiveBytes).
func WeightBytes(w kernels.Weight) int64 {
	f := w.Format()
	n := int64(f.RowBytes(w.Cols())) * int64(w.Rows())
	if f.Quantized() {
		per := int64(f.Scale.Size()) * int64(w.Rows()) * int64(w.Cols()/f.GroupSize)
		n += per
		if f.Kind == quant.Affine {
			n += per // biases
		}
	}
	return n
}

// LinearBytes is the stored size of the layers' weight matrices (their
// bias vectors aside); a nil layer, one a checkpoint lacks, counts nothing.
func LinearBytes(ls ...*Linear) int64 {
	var n int64
	for _, l := range ls {
		if l != nil {
			n += WeightBytes(l.W)
		}
	}
	return n
}
