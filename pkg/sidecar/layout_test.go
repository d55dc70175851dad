package sidecar_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/sidecar"
	"github.com/stretchr/testify/require"
)

// valid is a two-layer, four-expert affine 4-bit layout for hidden 64 and
// expert width 32.
func valid() *sidecar.Layout {
	comps := []sidecar.Component{
		{Name: "gate_proj.weight", DType: "U32", Shape: []int64{32, 8}},
		{Name: "gate_proj.scales", DType: "BF16", Shape: []int64{32, 1}},
		{Name: "gate_proj.biases", DType: "BF16", Shape: []int64{32, 1}},
		{Name: "up_proj.weight", DType: "U32", Shape: []int64{32, 8}},
		{Name: "up_proj.scales", DType: "BF16", Shape: []int64{32, 1}},
		{Name: "up_proj.biases", DType: "BF16", Shape: []int64{32, 1}},
		{Name: "down_proj.weight", DType: "U32", Shape: []int64{64, 4}},
		{Name: "down_proj.scales", DType: "BF16", Shape: []int64{64, 1}},
		{Name: "down_proj.biases", DType: "BF16", Shape: []int64{64, 1}},
	}
	var off int64
	for i := range comps {
		n, err := sidecar.ComponentSize(comps[i].DType, comps[i].Shape)
		if err != nil {
			panic(err)
		}
		comps[i].Offset, comps[i].Size = off, n
		off += n
	}
	stride := (off + 255) / 256 * 256
	return &sidecar.Layout{
		Format: sidecar.Format, Version: sidecar.Version, ModelType: "qwen3_moe", NumExperts: 4,
		Quant:     sidecar.Quant{Mode: "affine", Bits: 4, GroupSize: 64},
		Alignment: 256, ExpertStride: stride, Components: comps,
		Layers: []sidecar.Layer{
			{Index: 1, File: sidecar.LayerFileName(1), Size: 4 * stride},
			{Index: 0, File: sidecar.LayerFileName(0), Size: 4 * stride},
		},
	}
}

func marshal(t *testing.T, l *sidecar.Layout) []byte {
	t.Helper()
	b, err := json.Marshal(l)
	require.NoError(t, err)
	return b
}

func TestParseValid(t *testing.T) {
	l, err := sidecar.Parse(marshal(t, valid()))
	require.NoError(t, err)
	require.Equal(t, []int{0, 1}, l.Indices(), "layers are sorted")
	ly, ok := l.Layer(1)
	require.True(t, ok)
	require.Equal(t, "layer_01.bin", ly.File)
	off, err := l.ExpertOffset(ly, 3)
	require.NoError(t, err)
	require.Equal(t, 3*l.ExpertStride, off)
	_, err = l.ExpertOffset(ly, 4)
	require.Error(t, err)
	require.Equal(t, 8*l.ExpertStride, l.TotalBytes())
	_, ok = l.Layer(7)
	require.False(t, ok)
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*sidecar.Layout)
		want   string
	}{
		{"format", func(l *sidecar.Layout) { l.Format = "other" }, "format"},
		{"version", func(l *sidecar.Layout) { l.Version = 2 }, "version 2 is not supported"},
		{"no experts", func(l *sidecar.Layout) { l.NumExperts = 0 }, "num_experts"},
		{"no quant", func(l *sidecar.Layout) { l.Quant.Mode = "" }, "quant.mode"},
		{"alignment", func(l *sidecar.Layout) { l.Alignment = 100 }, "power of two"},
		{"stride alignment", func(l *sidecar.Layout) { l.ExpertStride += 8 }, "multiple of the alignment"},
		{"stride", func(l *sidecar.Layout) { l.ExpertStride = 0 }, "expert_stride"},
		{"component size", func(l *sidecar.Layout) { l.Components[0].Size++ }, "needs 1024 bytes"},
		{"component dtype", func(l *sidecar.Layout) { l.Components[0].DType = "Q9_Z" }, "unknown dtype"},
		{"component outside", func(l *sidecar.Layout) { l.Components[8].Offset = l.ExpertStride - 1 }, "outside"},
		{"overlap", func(l *sidecar.Layout) { l.Components[1].Offset = 8 }, "overlap"},
		{"duplicate component", func(l *sidecar.Layout) { l.Components[1].Name = l.Components[0].Name }, "duplicate"},
		{"no components", func(l *sidecar.Layout) { l.Components = nil }, "no components"},
		{"no layers", func(l *sidecar.Layout) { l.Layers = nil }, "no layers"},
		{"duplicate layer", func(l *sidecar.Layout) { l.Layers[1].Index = 1 }, "listed twice"},
		{"negative layer", func(l *sidecar.Layout) { l.Layers[0].Index = -1 }, "out of range"},
		{"path in file", func(l *sidecar.Layout) { l.Layers[0].File = "../layer_01.bin" }, "not a plain file name"},
		{"absolute file", func(l *sidecar.Layout) { l.Layers[0].File = "/etc/passwd" }, "not a plain file name"},
		{"dotdot file", func(l *sidecar.Layout) { l.Layers[0].File = ".." }, "not a plain file name"},
		{"shared file", func(l *sidecar.Layout) { l.Layers[0].File = l.Layers[1].File }, "used by another layer"},
		{"layer size", func(l *sidecar.Layout) { l.Layers[0].Size-- }, "experts × stride"},
		{"layer experts", func(l *sidecar.Layout) { l.Layers[0].NumExperts = 3 }, "experts × stride"},
		{"sha256", func(l *sidecar.Layout) { l.Layers[0].SHA256 = "xyz" }, "sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := valid()
			tt.mutate(l)
			_, err := sidecar.Parse(marshal(t, l))
			require.Error(t, err)
			require.ErrorIs(t, err, sidecar.ErrInvalid)
			require.ErrorIs(t, err, fault.ErrIO)
			require.Contains(t, err.Error(), tt.want)
		})
	}
	for _, raw := range []string{"", "[]", "{", `{"format":"mach-expert-sidecar"} {}`, `{"version":"one"}`} {
		_, err := sidecar.Parse([]byte(raw))
		require.ErrorIs(t, err, sidecar.ErrInvalid, "%q", raw)
	}
}

func TestPrunedLayerOverride(t *testing.T) {
	l := valid()
	l.Layers[0].NumExperts = 2
	l.Layers[0].Size = 2 * l.ExpertStride
	got, err := sidecar.Parse(marshal(t, l))
	require.NoError(t, err)
	ly, _ := got.Layer(1)
	require.Equal(t, 2, got.LayerExperts(ly))
}

func writeLayers(t *testing.T, dir string, l *sidecar.Layout) {
	t.Helper()
	for _, ly := range l.Layers {
		f, err := os.Create(filepath.Join(dir, ly.File))
		require.NoError(t, err)
		require.NoError(t, f.Truncate(ly.Size))
		require.NoError(t, f.Close())
	}
}

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	l := valid()
	require.NoError(t, l.WriteFile(dir))
	writeLayers(t, dir, l)
	got, err := sidecar.Load(dir)
	require.NoError(t, err)
	require.Equal(t, l.Indices(), got.Indices())

	require.NoError(t, os.Remove(filepath.Join(dir, "layer_01.bin")))
	_, err = sidecar.Load(dir)
	require.ErrorIs(t, err, sidecar.ErrIncomplete)
	require.ErrorIs(t, err, fault.ErrIO)
	require.Contains(t, err.Error(), "declares layer 1")
	require.Contains(t, err.Error(), "layer_01.bin is missing")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "layer_01.bin"), []byte("short"), 0o644))
	_, err = sidecar.Load(dir)
	require.ErrorIs(t, err, sidecar.ErrIncomplete)
	require.Contains(t, err.Error(), "is 5 bytes")

	require.NoError(t, os.Remove(filepath.Join(dir, "layer_01.bin")))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "layer_01.bin"), 0o755))
	_, err = sidecar.Load(dir)
	require.ErrorIs(t, err, sidecar.ErrIncomplete)
	require.Contains(t, err.Error(), "not a regular file")
}

func TestWriteFileValidates(t *testing.T) {
	l := valid()
	l.Version = 0
	require.ErrorIs(t, l.WriteFile(t.TempDir()), sidecar.ErrInvalid)
}

func TestComponentSize(t *testing.T) {
	tests := []struct {
		dtype string
		shape []int64
		want  int64
		err   bool
	}{
		{"BF16", []int64{32, 64}, 4096, false},
		{"U32", []int64{512, 256}, 524288, false},
		{"U8", []int64{3}, 3, false},
		{"F4", []int64{3}, 0, true}, // 12 bits is not whole bytes
		{"IQ2_XXS", []int64{768, 2048}, 768 * 8 * 66, false},
		{"IQ2_XS", []int64{768, 2048}, 768 * 8 * 74, false},
		{"Q2_K", []int64{2048, 768}, 2048 * 3 * 84, false},
		{"Q8_0", []int64{2, 64}, 2 * 2 * 34, false},
		{"MXFP4", []int64{1, 32}, 17, false},
		{"IQ2_XXS", []int64{2880, 2880}, 0, true}, // gpt-oss rows are not multiples of 256
		{"BF16", nil, 0, true},
		{"BF16", []int64{0, 4}, 0, true},
		{"BF16", []int64{-1, 4}, 0, true},
		{"BF16", []int64{1 << 40, 1 << 40}, 0, true},
		{"NOPE", []int64{1}, 0, true},
	}
	for _, tt := range tests {
		got, err := sidecar.ComponentSize(tt.dtype, tt.shape)
		if tt.err {
			require.Error(t, err, "%s%v", tt.dtype, tt.shape)
			continue
		}
		require.NoError(t, err, "%s%v", tt.dtype, tt.shape)
		require.Equal(t, tt.want, got, "%s%v", tt.dtype, tt.shape)
	}
	require.True(t, sidecar.IsGGUFType("IQ2_XXS"))
	require.False(t, sidecar.IsGGUFType("BF16"))
}
