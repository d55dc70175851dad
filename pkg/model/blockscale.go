package model

import (
	"encoding/json"

	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/safetensors"
)

// DeepSeek's quantized weights pair base.weight with base.scale:
//
//   - FP8: F8_E4M3 codes [out, in] with one scale per tile of
//     quantization_config.weight_block_size (128×128 in every release),
//     F8_E8M0 ("ue8m0") or f32 — the attention and shared experts of
//     DeepSeek-V3/V4;
//   - FP4: I8/U8 e2m1 pairs [out, in/2] (even column in the low nibble)
//     with an F8_E8M0 scale per 32 values [out, in/32] — DeepSeek-V4's
//     routed experts, which is MXFP4.
//
// Both are computed on as stored: the codes stay in the mapped file; FP8's
// tile scales are repeated per row (quant.FromBlockScaled).

// blockSize is config.json's quantization_config.weight_block_size, or
// DeepSeek's 128×128.
func (w *Weights) blockSize() (rows, cols int) {
	rows, cols = 128, 128
	if q := w.cfg.Quant; q != nil && len(q.Raw) > 0 {
		var b struct {
			Block []int `json:"weight_block_size"`
		}
		if json.Unmarshal(q.Raw, &b) == nil && len(b.Block) == 2 && b.Block[0] > 0 && b.Block[1] > 0 {
			rows, cols = b.Block[0], b.Block[1]
		}
	}
	return rows, cols
}

// scaled decodes base.weight with its base.scale companion.
func (w *Weights) scaled(base string) (Tensor, error) {
	name := base + ".weight"
	data, info, err := w.bytesOf(name)
	if err != nil {
		return Tensor{}, err
	}
	scales, sinfo, err := w.bytesOf(base + ".scale")
	if err != nil {
		return Tensor{}, err
	}
	if len(info.Shape) != 2 || len(sinfo.Shape) != 2 {
		return Tensor{}, w.errf(name, "shape %v with scale %v: want 2-D [out, in] weights", info.Shape, sinfo.Shape)
	}
	rows, packed := int(info.Shape[0]), int(info.Shape[1])
	var st quant.ScaleType
	switch sinfo.DType {
	case safetensors.F8E8M0, safetensors.U8:
		st = quant.ScaleE8M0
	case safetensors.F32:
		st = quant.ScaleF32
	case safetensors.BF16:
		st = quant.ScaleBF16
	}
	var m *quant.Matrix
	switch info.DType {
	case safetensors.F8E4M3:
		br, bc := w.blockSize()
		if int(sinfo.Shape[0]) != (rows+br-1)/br || int(sinfo.Shape[1]) != (packed+bc-1)/bc {
			return Tensor{}, w.errf(base+".scale", "shape %v, want [%d, %d]: one scale per %d×%d tile of %v (quantization_config.weight_block_size)",
				sinfo.Shape, (rows+br-1)/br, (packed+bc-1)/bc, br, bc, info.Shape)
		}
		if st == quant.ScaleNone {
			return Tensor{}, w.errf(base+".scale", "dtype %s, want F8_E8M0 or F32 tile scales", sinfo.DType)
		}
		if m, err = quant.FromBlockScaled(data, rows, packed, scales, st, br, bc); err != nil {
			return Tensor{}, w.errf(name, "%v", err)
		}
	case safetensors.I8, safetensors.U8:
		cols := 2 * packed
		if cols%32 != 0 || int(sinfo.Shape[0]) != rows || int(sinfo.Shape[1]) != cols/32 {
			return Tensor{}, w.errf(base+".scale", "shape %v, want [%d, %d]: one scale per 32 values of the FP4 weight %v (two values a byte)", sinfo.Shape, rows, cols/32, info.Shape)
		}
		if st != quant.ScaleE8M0 {
			return Tensor{}, w.errf(base+".scale", "dtype %s, want F8_E8M0 (or U8) FP4 scales", sinfo.DType)
		}
		m = &quant.Matrix{Format: quant.Format{Kind: quant.MXFP4, Bits: 4, GroupSize: 32, Scale: quant.ScaleE8M0},
			Rows: rows, Cols: cols, Data: data, Scales: scales}
		packed = cols
	default:
		return Tensor{}, w.errf(name, "dtype %s with a .scale: want F8_E4M3 (FP8) or I8 (FP4)", info.DType)
	}
	if err := m.Validate(); err != nil {
		return Tensor{}, w.errf(name, "%v", err)
	}
	return Tensor{Name: name, M: m, Shape: []int64{int64(rows), int64(packed)}}, nil
}
