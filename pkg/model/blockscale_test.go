package model_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/stretchr/testify/require"
)

// DeepSeek's weight + .scale pairs decode as FP8 (tile scales repeated per
// row) and FP4 (MXFP4), and malformed pairs are refused naming the tensor.
func TestDeepSeekScaledWeights(t *testing.T) {
	dir := t.TempDir()
	w := make([]float32, 200*64)
	for i := range w {
		w[i] = float32(i%13) - 6
	}
	codes, scales, err := quant.QuantizeFP8Blocks(w, 200, 64, 128, 128)
	require.NoError(t, err)
	fp4, err := quant.QuantizeMXFP4(w[:8*64], 8, 64)
	require.NoError(t, err)
	ts := []safetensors.WriteTensor{
		{Name: "fp8.weight", DType: safetensors.F8E4M3, Shape: []int64{200, 64}, Data: codes},
		{Name: "fp8.scale", DType: safetensors.F8E8M0, Shape: []int64{2, 1}, Data: scales},
		{Name: "fp4.weight", DType: safetensors.I8, Shape: []int64{8, 32}, Data: fp4.Data},
		{Name: "fp4.scale", DType: safetensors.F8E8M0, Shape: []int64{8, 2}, Data: fp4.Scales},
		{Name: "badtile.weight", DType: safetensors.F8E4M3, Shape: []int64{200, 64}, Data: codes},
		{Name: "badtile.scale", DType: safetensors.F8E8M0, Shape: []int64{1, 1}, Data: scales[:1]},
		{Name: "f32scale.weight", DType: safetensors.I8, Shape: []int64{8, 32}, Data: fp4.Data},
		{Name: "f32scale.scale", DType: safetensors.F32, Shape: []int64{8, 2}, Data: make([]byte, 64)},
		{Name: "odd.weight", DType: safetensors.I16, Shape: []int64{8, 32}, Data: make([]byte, 512)},
		{Name: "odd.scale", DType: safetensors.F8E8M0, Shape: []int64{8, 2}, Data: fp4.Scales},
	}
	require.NoError(t, safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, nil))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type": "deepseek_v4",
		"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}`), 0o644))
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	ws, err := model.OpenWeights(dir, cfg, b)
	require.NoError(t, err)
	defer ws.Close()

	tt, err := ws.Matrix("fp8")
	require.NoError(t, err)
	require.Equal(t, quant.FP8, tt.M.Format.Kind)
	want, err := quant.FromBlockScaled(codes, 200, 64, scales, quant.ScaleE8M0, 128, 128)
	require.NoError(t, err)
	require.Equal(t, want.Dequantize(), tt.M.Dequantize())
	tt, err = ws.Matrix("fp4.weight")
	require.NoError(t, err)
	require.Equal(t, []int64{8, 64}, tt.Shape)
	require.Equal(t, fp4.Dequantize(), tt.M.Dequantize())
	for base, msg := range map[string]string{
		"badtile":  "one scale per 128×128 tile",
		"f32scale": "want F8_E8M0 (or U8) FP4 scales",
		"odd":      "want F8_E4M3 (FP8) or I8 (FP4)",
	} {
		_, err := ws.Matrix(base)
		require.ErrorIs(t, err, model.ErrWeight, base)
		require.ErrorContains(t, err, msg, base)
	}
}
