package export_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/maniac-ai/mach/pkg/sidecar"
	"github.com/maniac-ai/mach/pkg/sidecar/export"
	"github.com/stretchr/testify/require"
)

func fixtureDir(t *testing.T, name string) string {
	t.Helper()
	root, err := fixture.Dir()
	require.NoError(t, err)
	return filepath.Join(root, name)
}

// sourceBytes returns expert e's bytes of the routed-expert tensor that
// becomes component comp of layer, straight from the checkpoint.
func sourceBytes(t *testing.T, set *safetensors.Set, cfg *modelconfig.Config, layer, e int, comp string) []byte {
	t.Helper()
	for _, name := range set.Names() {
		k, et := checkpoint.Classify(cfg.ModelType, name)
		if k != checkpoint.RoutedExpert || et.MTP || et.Layer != layer {
			continue
		}
		if string(et.Proj)+"_proj."+string(et.Part) != comp || (!et.Stacked() && et.Expert != e) {
			continue
		}
		b, info, err := set.Bytes(name)
		require.NoError(t, err)
		if et.Stacked() {
			per := len(b) / int(info.Shape[0])
			return b[e*per : (e+1)*per]
		}
		return b
	}
	t.Fatalf("no source tensor for layer %d expert %d %s", layer, e, comp)
	return nil
}

// Every layout mach reads is copied byte for byte, with checksums that
// verify.
func TestExportCopiesUnchanged(t *testing.T) {
	tests := []struct {
		fixture string
		mode    string
		comps   []string
	}{
		{"qwen3_moe", "f32", []string{"gate_proj.weight", "up_proj.weight", "down_proj.weight"}},
		{"qwen3_moe_bf16", "bf16", []string{"gate_up_proj.weight", "down_proj.weight"}},
		{"qwen3_moe_perexpert", "bf16", []string{"gate_proj.weight", "up_proj.weight", "down_proj.weight"}},
		{"qwen3_moe_stacked", "bf16", []string{"gate_proj.weight", "up_proj.weight", "down_proj.weight"}},
		{"qwen3_moe_mlx4", "affine", []string{"gate_proj.weight", "gate_proj.scales", "gate_proj.biases", "up_proj.weight", "up_proj.scales", "up_proj.biases", "down_proj.weight", "down_proj.scales", "down_proj.biases"}},
		{"gpt_oss", "f32", []string{"gate_up_proj.weight", "gate_up_proj.bias", "down_proj.weight", "down_proj.bias"}},
		{"gpt_oss_mxfp4", "mxfp4", []string{"gate_up_proj.blocks", "gate_up_proj.scales", "gate_up_proj.bias", "down_proj.blocks", "down_proj.scales", "down_proj.bias"}},
		{"deepseek_v4", "f32", []string{"gate_proj.weight", "up_proj.weight", "down_proj.weight"}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			src := fixtureDir(t, tt.fixture)
			out := t.TempDir()
			var last export.Progress
			res, err := export.Run(context.Background(), export.Options{Checkpoint: src, Output: out, Progress: func(p export.Progress) { last = p }})
			require.NoError(t, err)
			require.False(t, res.Quantized)
			require.Equal(t, res.Bytes, last.Bytes)
			require.Equal(t, last.Layers, last.LayersDone)

			l, err := sidecar.Load(out)
			require.NoError(t, err)
			require.Equal(t, tt.mode, l.Quant.Mode)
			require.True(t, l.HasChecksums())
			require.Equal(t, int64(sidecar.DirectIOAlignment), l.Alignment)
			require.Zero(t, l.ExpertStride%sidecar.DirectIOAlignment)
			require.NoError(t, l.VerifyChecksums(context.Background(), out, nil))
			var names []string
			for _, c := range l.Components {
				names = append(names, c.Name)
				require.Zero(t, c.Offset%64, "%s is cache-line aligned", c.Name)
			}
			require.Equal(t, tt.comps, names)

			cfg, err := modelconfig.Load(src)
			require.NoError(t, err)
			require.Equal(t, cfg.MoELayers(), l.Indices())
			require.Equal(t, cfg.NumExperts, l.NumExperts)
			set, err := safetensors.OpenSet(src)
			require.NoError(t, err)
			defer set.Close()
			for _, ly := range l.Layers {
				data, err := os.ReadFile(filepath.Join(out, ly.File))
				require.NoError(t, err)
				for e := 0; e < l.LayerExperts(ly); e++ {
					for _, c := range l.Components {
						off := int64(e)*l.ExpertStride + c.Offset
						require.True(t, bytes.Equal(sourceBytes(t, set, cfg, ly.Index, e, c.Name), data[off:off+c.Size]),
							"layer %d expert %d %s", ly.Index, e, c.Name)
					}
				}
			}
		})
	}
}

// --bits on float experts quantizes them with MLX's affine quantizer.
func TestExportQuantizes(t *testing.T) {
	src := fixtureDir(t, "qwen3_moe_perexpert")
	out := t.TempDir()
	res, err := export.Run(context.Background(), export.Options{Checkpoint: src, Output: out, Bits: 4, GroupSize: 32})
	require.NoError(t, err)
	require.True(t, res.Quantized)
	require.Equal(t, "bf16", res.Source.Mode)
	l, err := sidecar.Load(out)
	require.NoError(t, err)
	require.Equal(t, sidecar.Quant{Mode: "affine", Bits: 4, GroupSize: 32}, l.Quant)
	require.NoError(t, l.VerifyChecksums(context.Background(), out, nil))
	c, ok := l.Component("down_proj.weight")
	require.True(t, ok)
	require.Equal(t, "U32", c.DType)
	require.Equal(t, []int64{64, 64 * 4 / 32}, c.Shape)
	sc, ok := l.Component("down_proj.scales")
	require.True(t, ok)
	require.Equal(t, "BF16", sc.DType)
	bi, _ := l.Component("down_proj.biases")

	cfg, err := modelconfig.Load(src)
	require.NoError(t, err)
	set, err := safetensors.OpenSet(src)
	require.NoError(t, err)
	defer set.Close()
	ly := l.Layers[1]
	data, err := os.ReadFile(filepath.Join(out, ly.File))
	require.NoError(t, err)
	e := 5
	raw := sourceBytes(t, set, cfg, ly.Index, e, "down_proj.weight")
	w := (&quant.Matrix{Format: quant.Format{Kind: quant.BF16}, Rows: 64, Cols: 64, Data: raw}).Dequantize()
	want, err := quant.QuantizeAffine(w, 64, 64, 4, 32, quant.ScaleBF16)
	require.NoError(t, err)
	base := int64(e) * l.ExpertStride
	got := &quant.Matrix{Format: want.Format, Rows: 64, Cols: 64,
		Data:   data[base+c.Offset : base+c.Offset+c.Size],
		Scales: data[base+sc.Offset : base+sc.Offset+sc.Size],
		Biases: data[base+bi.Offset : base+bi.Offset+bi.Size]}
	require.Equal(t, want.Data, got.Data)
	require.Equal(t, want.Scales, got.Scales)
	require.Equal(t, want.Biases, got.Biases)
	// And the quantization is faithful: within one step of each group (half
	// a step, plus the rounding of bf16 scales and biases).
	deq := got.Dequantize()
	for r := 0; r < 64; r++ {
		for g := 0; g < 2; g++ {
			step := float64(got.Scale(r, g))
			for i := g * 32; i < (g+1)*32; i++ {
				d := float64(deq[r*64+i] - w[r*64+i])
				require.LessOrEqual(t, d*d, step*step, "row %d col %d", r, i)
			}
		}
	}
}

// The gpt-oss bf16/f32 experts are stored input-major; quantizing
// transposes them so the sidecar holds ordinary [out, in] codes.
func TestExportQuantizesTransposed(t *testing.T) {
	out := t.TempDir()
	_, err := export.Run(context.Background(), export.Options{Checkpoint: fixtureDir(t, "gpt_oss"), Output: out, Bits: 8, GroupSize: 32})
	require.NoError(t, err)
	l, err := sidecar.Load(out)
	require.NoError(t, err)
	c, _ := l.Component("gate_up_proj.weight")
	require.False(t, c.Transposed)
	require.True(t, c.Interleaved)
	require.Equal(t, []int64{64, 64 * 8 / 32}, c.Shape)
	d, _ := l.Component("down_proj.weight")
	require.Equal(t, []int64{64, 32 * 8 / 32}, d.Shape, "down_proj [E, I=32, H=64] input-major becomes [64, 32]")
}

func TestExportRefusals(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
		opts    export.Options
		kind    error
		want    string
	}{
		{"num experts", "qwen3_moe", export.Options{NumExperts: 16}, fault.ErrUsage, "--num-experts 16 disagrees with the checkpoint: layer 0 holds 8"},
		{"requantize", "qwen3_moe_mlx4", export.Options{Bits: 8, GroupSize: 64}, fault.ErrUsage, "never requantizes"},
		{"other group", "qwen3_moe_mlx4", export.Options{Bits: 4, GroupSize: 32, GroupSizeSet: true}, fault.ErrUsage, "never requantizes"},
		{"bits", "qwen3_moe", export.Options{Bits: 7, GroupSize: 64}, fault.ErrUsage, "2, 3, 4, 5, 6 or 8 bits"},
		{"group", "qwen3_moe", export.Options{Bits: 4, GroupSize: 48}, fault.ErrUsage, "not whole groups"},
		{"mxfp4", "gpt_oss_mxfp4", export.Options{Bits: 4, GroupSize: 32}, fault.ErrUsage, "never requantizes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			tt.opts.Checkpoint, tt.opts.Output = fixtureDir(t, tt.fixture), out
			_, err := export.Run(context.Background(), tt.opts)
			require.ErrorIs(t, err, tt.kind)
			require.ErrorIs(t, err, export.ErrMismatch)
			require.Contains(t, err.Error(), tt.want)
			ents, _ := os.ReadDir(out)
			require.Empty(t, ents, "nothing is written when the plan is refused")
		})
	}
	// The checkpoint's own bits copy unchanged.
	res, err := export.Run(context.Background(), export.Options{Checkpoint: fixtureDir(t, "qwen3_moe_mlx4"), Output: t.TempDir(), Bits: 4, GroupSize: 64})
	require.NoError(t, err)
	require.False(t, res.Quantized)
	// A directory without weights.
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(fixtureDir(t, "qwen3_moe"), "config.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644))
	_, err = export.Run(context.Background(), export.Options{Checkpoint: dir})
	require.ErrorIs(t, err, fault.ErrIO)
	require.Contains(t, err.Error(), "no safetensors weights")
}

// A re-export removes the old manifest before writing and stale layer
// files after; a cancelled export leaves no manifest.
func TestExportReplacesAtomically(t *testing.T) {
	src := fixtureDir(t, "qwen3_moe")
	out := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(out, "layer_07.bin"), []byte("stale"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(out, "notes.txt"), []byte("keep"), 0o644))
	_, err := export.Run(context.Background(), export.Options{Checkpoint: src, Output: out})
	require.NoError(t, err)
	require.NoFileExists(t, filepath.Join(out, "layer_07.bin"))
	require.FileExists(t, filepath.Join(out, "notes.txt"))
	require.FileExists(t, filepath.Join(out, sidecar.LayoutName))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = export.Run(ctx, export.Options{Checkpoint: src, Output: out})
	require.ErrorIs(t, err, context.Canceled)
	require.NoFileExists(t, filepath.Join(out, sidecar.LayoutName), "the old manifest is gone, no new one was written")
	ents, err := os.ReadDir(out)
	require.NoError(t, err)
	for _, e := range ents {
		require.False(t, strings.Contains(e.Name(), ".tmp-"), "temporary file %s left behind", e.Name())
	}
}

// The default output is CHECKPOINT/expert_sidecar, and mach check's
// inspection then sees a valid sidecar (engine layout).
func TestExportDefaultOutput(t *testing.T) {
	dir := t.TempDir()
	src := fixtureDir(t, "qwen3_moe_perexpert")
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	res, err := export.Run(context.Background(), export.Options{Checkpoint: dir, NumExperts: 8})
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, sidecar.DirName), res.Dir)
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	in, err := checkpoint.Inspect(dir, cfg, checkpoint.Options{})
	require.NoError(t, err)
	require.True(t, in.Sidecar.Valid, "%v", in.Sidecar.Err)
	require.Equal(t, checkpoint.Engine, in.Layout)
}
