package cpu

import (
	"fmt"
	"unsafe"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/quant"
)

// weight is a quant.Matrix bound to the CPU backend. Its bytes stay where
// they are (usually the mmapped checkpoint).
type weight struct {
	m *quant.Matrix
	// f32 views Data in place when the format is F32 and the bytes are
	// 4-byte aligned; nil otherwise.
	f32 []float32
	// fused names the assembly dequantize-dot kernel for this format, or
	// fusedNone.
	fused fusedKind
}

type fusedKind uint8

const (
	fusedNone fusedKind = iota
	fusedAffine4BF16
	fusedAffine8BF16
)

func (w *weight) Rows() int            { return w.m.Rows }
func (w *weight) Cols() int            { return w.m.Cols }
func (w *weight) Format() quant.Format { return w.m.Format }

// Bind implements kernels.Backend. It never copies the weight.
func (b *Backend) Bind(m *quant.Matrix) (kernels.Weight, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("cpu bind: %w", err)
	}
	if !b.Capabilities().Supports(m.Format) {
		return nil, fmt.Errorf("cpu bind %s: %w", m.Format, kernels.ErrUnsupported)
	}
	w := &weight{m: m}
	if m.Format.Kind == quant.F32 && uintptr(unsafe.Pointer(unsafe.SliceData(m.Data)))%4 == 0 {
		w.f32 = unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(m.Data))), m.Rows*m.Cols)
	}
	if f := m.Format; f.Kind == quant.Affine && f.Scale == quant.ScaleBF16 {
		switch {
		case f.Bits == 4 && f.GroupSize%16 == 0:
			w.fused = fusedAffine4BF16
		case f.Bits == 8 && f.GroupSize%8 == 0:
			w.fused = fusedAffine8BF16
		}
	}
	return w, nil
}

func weightOf(w kernels.Weight) (*weight, error) {
	cw, ok := w.(*weight)
	if !ok || cw == nil {
		return nil, fmt.Errorf("weight from another backend (%T)", w)
	}
	return cw, nil
}

// dequantRow writes row r of w as f32 into dst, exactly as
// quant.Matrix.DequantRow does.
func (b *Backend) dequantRow(w *weight, r int, dst []float32) {
	m := w.m
	if w.f32 != nil {
		copy(dst, w.f32[r*m.Cols:(r+1)*m.Cols])
		return
	}
	if b.simd && dequantFast(m, r, dst) { // MXFP4 and bf16 (mxfp4.go)
		return
	}
	dequantRowGo(m, r, dst)
}

// dequantRowGo is the plain-Go dequantizer with fast paths for the common
// formats; it computes exactly what quant.Matrix.DequantRow does.
func dequantRowGo(m *quant.Matrix, r int, dst []float32) {
	f := m.Format
	if f.Kind == quant.FP8 {
		dequantFP8Row(m, r, dst) // fp8.go
		return
	}
	if f.Kind != quant.Affine || (f.Bits != 4 && f.Bits != 8) {
		m.DequantRow(r, dst)
		return
	}
	rb := f.RowBytes(m.Cols)
	row := m.Data[r*rb : (r+1)*rb]
	gs := f.GroupSize
	for g := 0; g < m.Groups(); g++ {
		s, bias := m.Scale(r, g), m.Bias(r, g)
		out := dst[g*gs : (g+1)*gs]
		if f.Bits == 4 {
			codes := row[g*gs/2 : (g+1)*gs/2]
			for i, c := range codes {
				out[2*i] = float32(s*float32(c&15)) + bias
				out[2*i+1] = float32(s*float32(c>>4)) + bias
			}
		} else {
			codes := row[g*gs : (g+1)*gs]
			for i, c := range codes {
				out[i] = float32(s*float32(c)) + bias
			}
		}
	}
}

// Embed implements kernels.Backend.
func (b *Backend) Embed(dst kernels.Tensor, table kernels.Weight, ids []int32) {
	w, err := weightOf(table)
	if err != nil {
		b.fail("embed", err)
		return
	}
	d, err := f32Of(dst)
	if err != nil {
		b.fail("embed", err)
		return
	}
	if dst.Rows != len(ids) || dst.Cols != w.m.Cols {
		b.failf("embed", "%d ids into %v from a %d×%d table", len(ids), dst, w.m.Rows, w.m.Cols)
		return
	}
	for _, id := range ids {
		if id < 0 || int(id) >= w.m.Rows {
			b.failf("embed", "token id %d outside the vocabulary of %d", id, w.m.Rows)
			return
		}
	}
	for i, id := range ids {
		b.dequantRow(w, int(id), row(d, dst, i))
	}
}
