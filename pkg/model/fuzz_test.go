package model_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/safetensors"
)

var fuzzDTypes = []safetensors.DType{safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.U32, safetensors.U8, safetensors.I64, safetensors.F8E4M3}

// FuzzMatrix writes a checkpoint whose tensor "m" (with optional MLX
// scales/biases or gpt-oss blocks/scales) has arbitrary dtypes and shapes,
// and a quantization block with arbitrary bits and group size: the loader
// must refuse it or return a matrix that dequantizes and binds, never
// panic.
func FuzzMatrix(f *testing.F) {
	f.Add(uint8(3), uint8(2), uint8(2), uint16(4), uint16(8), uint16(4), uint16(2), uint8(4), uint8(64), uint8(1))
	f.Add(uint8(0), uint8(0), uint8(0), uint16(3), uint16(5), uint16(0), uint16(0), uint8(0), uint8(0), uint8(0))
	f.Add(uint8(4), uint8(4), uint8(0), uint16(2), uint16(2), uint16(16), uint16(0), uint8(4), uint8(32), uint8(2))
	f.Fuzz(func(t *testing.T, wd, sd, bd uint8, rows, packed, sRows, sCols uint16, bits, group, layout uint8) {
		dir := t.TempDir()
		r, p := int64(rows%9)+1, int64(packed%17)+1
		dt := func(i uint8) safetensors.DType { return fuzzDTypes[int(i)%len(fuzzDTypes)] }
		mk := func(name string, d safetensors.DType, shape ...int64) safetensors.WriteTensor {
			n := int64(d.Bits())
			for _, x := range shape {
				n *= x
			}
			return safetensors.WriteTensor{Name: name, DType: d, Shape: shape, Data: make([]byte, n/8)}
		}
		var ts []safetensors.WriteTensor
		sr, sc := int64(sRows%9), int64(sCols%9)
		switch layout % 3 {
		case 0: // plain or MLX affine
			ts = append(ts, mk("m.weight", dt(wd), r, p))
			if sr > 0 && sc > 0 {
				ts = append(ts, mk("m.scales", dt(sd), sr, sc), mk("m.biases", dt(bd), sr, sc))
			}
		case 1: // stacked, no .weight suffix
			ts = append(ts, mk("m", dt(wd), 2, r, p))
			if sr > 0 && sc > 0 {
				ts = append(ts, mk("m.scales", dt(sd), 2, sr, sc))
			}
		case 2: // gpt-oss blocks
			ts = append(ts, mk("m_blocks", dt(wd), 2, r, p, 16))
			if sr > 0 {
				ts = append(ts, mk("m_scales", dt(sd), 2, r, sr))
			}
		}
		for _, x := range ts {
			if len(x.Data) == 0 {
				return // the writer refuses empty tensors' odd bit counts; not the loader's concern
			}
		}
		if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
			return
		}
		cfg := fmt.Sprintf(`{"model_type": "qwen3_moe", "hidden_size": 8, "quantization": {"bits": %d, "group_size": %d}}`, bits%10, group)
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := modelconfig.Load(dir)
		if err != nil {
			return
		}
		b := cpu.New(cpu.Options{Threads: 1, Reference: true})
		defer b.Close()
		w, err := model.OpenWeights(dir, c, b)
		if err != nil {
			return
		}
		defer w.Close()
		tt, err := w.Matrix("m")
		if err != nil {
			return
		}
		_ = tt.M.Dequantize()
		if _, err := w.Bind(tt.Name, tt.M); err != nil {
			t.Fatalf("a matrix Matrix accepted does not bind: %v", err)
		}
	})
}
