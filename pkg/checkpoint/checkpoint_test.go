package checkpoint_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/checkpoint"
	ct "github.com/maniac-ai/mach/pkg/checkpoint/checkpointtest"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/maniac-ai/mach/pkg/sidecar"
	"github.com/stretchr/testify/require"
)

func inspect(t *testing.T, dir string, opts checkpoint.Options) (*checkpoint.Inspection, error) {
	t.Helper()
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	return checkpoint.Inspect(dir, cfg, opts)
}

// The real headers of transformers and MLX checkpoints.
func TestInspectFixtures(t *testing.T) {
	tests := []struct {
		fixture   string
		layout    checkpoint.Layout
		quant     string
		layers    []int
		skipped   bool
		expertsKB int64 // routed-expert bytes / 1024
	}{
		{"qwen3_moe", checkpoint.PerExpert, "f32 (32-bit)", []int{0, 1, 2}, false, 576},
		{"qwen3_5_moe", checkpoint.PerExpert, "f32 (32-bit)", []int{0, 1, 2, 3}, true, 768},
		{"gpt_oss", checkpoint.Stacked, "f32 (32-bit)", []int{0, 1, 2, 3}, false, 784},
		{"gemma4", checkpoint.Stacked, "f32 (32-bit)", []int{0, 1, 2, 3}, true, 768},
		{"deepseek_v4", checkpoint.PerExpert, "f32 (32-bit)", []int{0, 1, 2, 3}, false, 768},
		{"qwen3_moe_mlx4", checkpoint.Stacked, "affine (4-bit, group 64)", []int{0, 2}, false, 108},
		{"qwen3_moe_mlx8", checkpoint.Stacked, "affine (8-bit, group 32)", []int{0, 2}, false, 216},
		{"qwen3_5_moe_mlx4", checkpoint.Stacked, "affine (4-bit, group 64)", []int{0, 1, 2, 3}, false, 216},
		{"qwen3_5_moe_bf16", checkpoint.Stacked, "bf16 (16-bit)", []int{0, 1, 2, 3}, true, 768},
		{"gemma4_mlx4", checkpoint.Stacked, "affine (4-bit, group 64)", []int{0, 1, 2, 3}, false, 216},
		{"gpt_oss_mxfp4", checkpoint.Stacked, "mxfp4 (4-bit)", []int{0, 1, 2, 3}, false, 110},
		{"gpt_oss_mlx", checkpoint.Stacked, "mxfp4 (4-bit)", []int{0, 1, 2, 3}, false, 110},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			dir := ct.Materialize(t, filepath.Join("testdata", tt.fixture))
			in, err := inspect(t, dir, checkpoint.Options{})
			require.NoError(t, err)
			require.True(t, in.WeightsInspected)
			require.Equal(t, tt.layout, in.Layout)
			require.Equal(t, tt.quant, in.Quant.String())
			require.Equal(t, "tensors", in.Quant.Source)
			require.Equal(t, tt.layers, in.Experts.Layers)
			for _, l := range tt.layers {
				require.Equal(t, 8, in.Experts.PerLayer[l])
			}
			require.Equal(t, tt.expertsKB, in.Experts.Bytes/1024)
			require.Positive(t, in.NonExpertBytes)
			require.Equal(t, tt.skipped, in.SkippedBytes > 0)
			require.False(t, in.Sidecar.Present)
			require.Empty(t, in.Warnings)
			hs, err := safetensors.ReadHeaders(dir)
			require.NoError(t, err)
			require.Equal(t, hs.TotalBytes(), in.Experts.Bytes+in.NonExpertBytes+in.SkippedBytes, "every byte is accounted for")
		})
	}
}

const qwenCfg = `{"model_type":"qwen3_moe","hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,
"num_key_value_heads":2,"head_dim":16,"vocab_size":100,"num_experts":4,"num_experts_per_tok":2,
"moe_intermediate_size":32,"max_position_embeddings":1024,"torch_dtype":"bfloat16"}`

// perExpert returns qwen3_moe per-expert bf16 tensors for layers × experts.
func perExpert(layers, experts int) []ct.Tensor {
	ts := []ct.Tensor{ct.T("model.embed_tokens.weight", "BF16", 100, 64), ct.T("lm_head.weight", "BF16", 100, 64)}
	for l := range layers {
		ts = append(ts, ct.T(fmt.Sprintf("model.layers.%d.mlp.gate.weight", l), "BF16", int64(experts), 64))
		for e := range experts {
			p := fmt.Sprintf("model.layers.%d.mlp.experts.%d.", l, e)
			ts = append(ts, ct.T(p+"gate_proj.weight", "BF16", 32, 64), ct.T(p+"up_proj.weight", "BF16", 32, 64), ct.T(p+"down_proj.weight", "BF16", 64, 32))
		}
	}
	return ts
}

func writeCheckpoint(t *testing.T, cfg string, tensors []ct.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	ct.WriteFile(t, dir, "config.json", cfg)
	ct.WriteSafetensors(t, filepath.Join(dir, "model.safetensors"), tensors)
	return dir
}

// writeSidecar writes a valid expert_sidecar/ for qwenCfg (layers 0..n-1,
// 4 experts, bf16 components) and returns its layout.
func writeSidecar(t *testing.T, dir string, layers int, quant sidecar.Quant, comps []sidecar.Component) *sidecar.Layout {
	t.Helper()
	var off int64
	for i := range comps {
		n, err := sidecar.ComponentSize(comps[i].DType, comps[i].Shape)
		require.NoError(t, err)
		comps[i].Offset, comps[i].Size = off, n
		off += n
	}
	l := &sidecar.Layout{Format: sidecar.Format, Version: sidecar.Version, ModelType: "qwen3_moe", NumExperts: 4,
		Quant: quant, ExpertStride: off, Components: comps}
	sd := filepath.Join(dir, sidecar.DirName)
	require.NoError(t, os.MkdirAll(sd, 0o755))
	for i := range layers {
		ly := sidecar.Layer{Index: i, File: sidecar.LayerFileName(i), Size: 4 * off}
		l.Layers = append(l.Layers, ly)
		f, err := os.Create(filepath.Join(sd, ly.File))
		require.NoError(t, err)
		require.NoError(t, f.Truncate(ly.Size))
		require.NoError(t, f.Close())
	}
	require.NoError(t, l.WriteFile(sd))
	return l
}

func bf16Components() []sidecar.Component {
	return []sidecar.Component{
		{Name: "gate_proj.weight", DType: "BF16", Shape: []int64{32, 64}},
		{Name: "up_proj.weight", DType: "BF16", Shape: []int64{32, 64}},
		{Name: "down_proj.weight", DType: "BF16", Shape: []int64{64, 32}},
	}
}

func TestInspectEngineLayout(t *testing.T) {
	dir := writeCheckpoint(t, qwenCfg, perExpert(2, 4))
	writeSidecar(t, dir, 2, sidecar.Quant{Mode: "bf16", Bits: 16}, bf16Components())
	in, err := inspect(t, dir, checkpoint.Options{})
	require.NoError(t, err)
	require.Equal(t, checkpoint.Engine, in.Layout)
	require.True(t, in.Sidecar.Valid)
	require.True(t, in.Sidecar.Verified)
	require.Equal(t, "bf16 (16-bit)", in.Quant.String())
	require.Equal(t, "tensors", in.Quant.Source)
	require.Equal(t, int64(2*4*3*32*64*2), in.Experts.Bytes)
}

func TestInspectSidecarMissingLayer(t *testing.T) {
	dir := writeCheckpoint(t, qwenCfg, perExpert(2, 4))
	writeSidecar(t, dir, 2, sidecar.Quant{Mode: "bf16", Bits: 16}, bf16Components())
	require.NoError(t, os.Remove(filepath.Join(dir, sidecar.DirName, "layer_01.bin")))
	in, err := inspect(t, dir, checkpoint.Options{})
	require.NoError(t, err, "a broken sidecar is a finding, not a failure")
	require.Equal(t, checkpoint.PerExpert, in.Layout)
	require.True(t, in.Sidecar.Present)
	require.False(t, in.Sidecar.Valid)
	require.ErrorIs(t, in.Sidecar.Err, sidecar.ErrIncomplete)
	require.Contains(t, in.Sidecar.Err.Error(), "layer_01.bin is missing")
	require.Len(t, in.Warnings, 1)
}

func TestInspectSidecarDisagrees(t *testing.T) {
	tests := []struct {
		name   string
		layers int
		cfg    string
		want   string
	}{
		{"does not cover a layer", 1, qwenCfg, "does not cover MoE layer 1"},
		{"declares a layer that is not MoE", 3, qwenCfg, "layer 2, which is not a MoE layer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeCheckpoint(t, tt.cfg, perExpert(2, 4))
			writeSidecar(t, dir, tt.layers, sidecar.Quant{Mode: "bf16", Bits: 16}, bf16Components())
			in, err := inspect(t, dir, checkpoint.Options{})
			require.NoError(t, err)
			require.False(t, in.Sidecar.Valid)
			require.Contains(t, in.Sidecar.Err.Error(), tt.want)
		})
	}
}

func TestInspectGGUFSidecar(t *testing.T) {
	cfg := `{"model_type":"qwen3_moe","hidden_size":256,"num_hidden_layers":1,"num_experts":4,"moe_intermediate_size":256,"num_attention_heads":2,"head_dim":128,"vocab_size":10}`
	var ts []ct.Tensor
	for e := range 4 {
		p := fmt.Sprintf("model.layers.0.mlp.experts.%d.", e)
		ts = append(ts, ct.T(p+"gate_proj.weight", "BF16", 256, 256), ct.T(p+"up_proj.weight", "BF16", 256, 256), ct.T(p+"down_proj.weight", "BF16", 256, 256))
	}
	dir := writeCheckpoint(t, cfg, ts)
	l := writeSidecar(t, dir, 1, sidecar.Quant{Mode: "iq2_xxs", Bits: 2}, []sidecar.Component{
		{Name: "gate_proj.weight", DType: "IQ2_XXS", Shape: []int64{256, 256}},
		{Name: "up_proj.weight", DType: "IQ2_XXS", Shape: []int64{256, 256}},
		{Name: "down_proj.weight", DType: "IQ2_XXS", Shape: []int64{256, 256}},
	})
	in, err := inspect(t, dir, checkpoint.Options{})
	require.NoError(t, err)
	require.Equal(t, checkpoint.Engine, in.Layout)
	require.Equal(t, "iq2_xxs (2-bit)", in.Quant.String())
	require.Equal(t, "sidecar", in.Quant.Source)
	require.True(t, in.Quant.IsGGUF2Bit())
	require.Equal(t, int64(4*3*256*66), l.TotalBytes())
}

func TestInspectShardedWithIndex(t *testing.T) {
	dir := t.TempDir()
	ct.WriteFile(t, dir, "config.json", qwenCfg)
	all := perExpert(2, 4)
	half := len(all) / 2
	ct.WriteSafetensors(t, filepath.Join(dir, "model-00001-of-00002.safetensors"), all[:half])
	ct.WriteSafetensors(t, filepath.Join(dir, "model-00002-of-00002.safetensors"), all[half:])
	wm := map[string]string{}
	for i, x := range all {
		wm[x.Name] = "model-00001-of-00002.safetensors"
		if i >= half {
			wm[x.Name] = "model-00002-of-00002.safetensors"
		}
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": wm})
	ct.WriteFile(t, dir, safetensors.IndexName, string(b))
	in, err := inspect(t, dir, checkpoint.Options{})
	require.NoError(t, err)
	require.Equal(t, checkpoint.PerExpert, in.Layout)
	require.Equal(t, []int{0, 1}, in.Experts.Layers)
}

// The quantized formats of routed experts, recognised from their tensors.
func TestInspectQuantFormats(t *testing.T) {
	layer := func(l int, f func(p string) []ct.Tensor) []ct.Tensor { return f(fmt.Sprintf("model.layers.%d.", l)) }
	tests := []struct {
		name    string
		cfg     string
		tensors func(p string) []ct.Tensor
		want    string
	}{
		{"deepseek native fp4", `{"model_type":"deepseek_v4","hidden_size":64,"num_hidden_layers":1,"n_routed_experts":2,"moe_intermediate_size":32}`,
			func(p string) []ct.Tensor {
				var ts []ct.Tensor
				for e := range 2 {
					q := fmt.Sprintf("%sffn.experts.%d.", p, e)
					ts = append(ts, ct.T(q+"w1.weight", "I8", 32, 32), ct.T(q+"w1.scale", "F8_E8M0", 32, 2),
						ct.T(q+"w3.weight", "I8", 32, 32), ct.T(q+"w3.scale", "F8_E8M0", 32, 2),
						ct.T(q+"w2.weight", "I8", 64, 16), ct.T(q+"w2.scale", "F8_E8M0", 64, 1))
				}
				return ts
			}, "mxfp4 (4-bit)"},
		{"fp8", `{"model_type":"qwen3_moe","hidden_size":64,"num_hidden_layers":1,"num_experts":2,"moe_intermediate_size":32}`,
			func(p string) []ct.Tensor {
				var ts []ct.Tensor
				for e := range 2 {
					q := fmt.Sprintf("%smlp.experts.%d.", p, e)
					ts = append(ts, ct.T(q+"gate_proj.weight", "F8_E4M3", 32, 64), ct.T(q+"gate_proj.weight_scale_inv", "F32", 1, 1),
						ct.T(q+"up_proj.weight", "F8_E4M3", 32, 64), ct.T(q+"down_proj.weight", "F8_E4M3", 64, 32))
				}
				return ts
			}, "fp8 (8-bit)"},
		{"mlx 3-bit", `{"model_type":"qwen3_moe","hidden_size":64,"num_hidden_layers":1,"num_experts":2,"moe_intermediate_size":32,"quantization":{"bits":3,"group_size":32}}`,
			func(p string) []ct.Tensor {
				q := p + "mlp.switch_mlp."
				return []ct.Tensor{
					ct.T(q+"gate_proj.weight", "U32", 2, 32, 6), ct.T(q+"gate_proj.scales", "BF16", 2, 32, 2), ct.T(q+"gate_proj.biases", "BF16", 2, 32, 2),
					ct.T(q+"up_proj.weight", "U32", 2, 32, 6), ct.T(q+"up_proj.scales", "BF16", 2, 32, 2), ct.T(q+"up_proj.biases", "BF16", 2, 32, 2),
					ct.T(q+"down_proj.weight", "U32", 2, 64, 3), ct.T(q+"down_proj.scales", "BF16", 2, 64, 1), ct.T(q+"down_proj.biases", "BF16", 2, 64, 1),
				}
			}, "affine (3-bit, group 32)"},
		{"mlx nvfp4", `{"model_type":"qwen3_moe","hidden_size":64,"num_hidden_layers":1,"num_experts":2,"moe_intermediate_size":32,"quantization":{"mode":"nvfp4"}}`,
			func(p string) []ct.Tensor {
				q := p + "mlp.switch_mlp."
				return []ct.Tensor{
					ct.T(q+"gate_proj.weight", "U32", 2, 32, 8), ct.T(q+"gate_proj.scales", "U8", 2, 32, 4),
					ct.T(q+"up_proj.weight", "U32", 2, 32, 8), ct.T(q+"up_proj.scales", "U8", 2, 32, 4),
					ct.T(q+"down_proj.weight", "U32", 2, 64, 4), ct.T(q+"down_proj.scales", "U8", 2, 64, 2),
				}
			}, "nvfp4 (4-bit)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeCheckpoint(t, tt.cfg, layer(0, tt.tensors))
			in, err := inspect(t, dir, checkpoint.Options{})
			require.NoError(t, err)
			require.Equal(t, tt.want, in.Quant.String())
		})
	}
}

func TestQuantDisagreementWarns(t *testing.T) {
	// config.json says 8-bit, the packing is 4-bit: the tensors win.
	src := ct.Materialize(t, filepath.Join("testdata", "qwen3_moe_mlx4"))
	b, err := os.ReadFile(filepath.Join(src, "config.json"))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	m["quantization"].(map[string]any)["bits"] = 8
	b, _ = json.Marshal(m)
	require.NoError(t, os.WriteFile(filepath.Join(src, "config.json"), b, 0o644))
	in, err := inspect(t, src, checkpoint.Options{})
	require.NoError(t, err)
	require.Equal(t, "affine (4-bit, group 64)", in.Quant.String())
	require.Len(t, in.Warnings, 1)
	require.Contains(t, in.Warnings[0], "8-bit")
}

func TestInspectMismatches(t *testing.T) {
	withLayer := func(ts []ct.Tensor, extra ...ct.Tensor) []ct.Tensor { return append(ts, extra...) }
	drop := func(ts []ct.Tensor, name string) []ct.Tensor {
		out := ts[:0:0]
		for _, x := range ts {
			if x.Name != name {
				out = append(out, x)
			}
		}
		return out
	}
	tests := []struct {
		name    string
		cfg     string
		tensors []ct.Tensor
		want    string
	}{
		{"expert count", qwenCfg, perExpert(2, 3), "holds 3 routed experts, but"},
		{"missing MoE layer", qwenCfg, perExpert(1, 4), "makes layer 1 a MoE layer, but no routed-expert tensors"},
		{"layer beyond num_hidden_layers", qwenCfg, withLayer(perExpert(2, 4), ct.T("model.layers.2.mlp.experts.0.gate_proj.weight", "BF16", 32, 64)), "layer 2, but num_hidden_layers is 2"},
		{"expert in a dense layer", `{"model_type":"qwen3_moe","hidden_size":64,"num_hidden_layers":2,"num_experts":4,"moe_intermediate_size":32,"mlp_only_layers":[1]}`,
			perExpert(2, 4), "which config.json does not make a MoE layer"},
		{"hole in expert indices", qwenCfg, drop(drop(drop(perExpert(2, 5), "model.layers.0.mlp.experts.2.gate_proj.weight"), "model.layers.0.mlp.experts.2.up_proj.weight"), "model.layers.0.mlp.experts.2.down_proj.weight"),
			"expert 2 is missing"},
		{"missing projection", qwenCfg, drop(perExpert(2, 4), "model.layers.1.mlp.experts.3.up_proj.weight"), "layer 1 expert 3 has no up projection"},
		{"shape vs hidden_size", `{"model_type":"qwen3_moe","hidden_size":128,"num_hidden_layers":2,"num_experts":4,"moe_intermediate_size":32}`,
			perExpert(2, 4), "hidden_size 128"},
		{"mixed layouts", qwenCfg, withLayer(perExpert(2, 4), ct.T("model.layers.0.mlp.switch_mlp.gate_proj.weight", "BF16", 4, 32, 64)), "mixes stacked"},
		{"stacked counts disagree", qwenCfg, []ct.Tensor{
			ct.T("model.layers.0.mlp.experts.gate_up_proj", "BF16", 4, 64, 64), ct.T("model.layers.0.mlp.experts.down_proj", "BF16", 3, 64, 32),
			ct.T("model.layers.1.mlp.experts.gate_up_proj", "BF16", 4, 64, 64), ct.T("model.layers.1.mlp.experts.down_proj", "BF16", 4, 64, 32)},
			"stacks 3 experts but"},
		{"stacked 1-D", qwenCfg, []ct.Tensor{ct.T("model.layers.0.mlp.experts.down_proj", "BF16", 4)}, "want the expert axis first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeCheckpoint(t, tt.cfg, tt.tensors)
			_, err := inspect(t, dir, checkpoint.Options{})
			require.Error(t, err)
			require.ErrorIs(t, err, fault.ErrIO)
			require.ErrorIs(t, err, checkpoint.ErrMismatch)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

// A pruned checkpoint whose layers keep different numbers of experts
// declares them in num_experts_per_layer.
func TestInspectPerLayerExpertCounts(t *testing.T) {
	perLayer := strings.Replace(qwenCfg, `"num_experts":4`, `"num_experts":4,"num_experts_per_layer":[4,3]`, 1)
	ts := perExpert(1, 4)
	for _, x := range perExpert(2, 3) {
		if strings.HasPrefix(x.Name, "model.layers.1.") {
			ts = append(ts, x)
		}
	}
	in, err := inspect(t, writeCheckpoint(t, perLayer, ts), checkpoint.Options{})
	require.NoError(t, err)
	require.Equal(t, checkpoint.PerExpert, in.Layout)
	require.Equal(t, map[int]int{0: 4, 1: 3}, in.Experts.PerLayer)

	_, err = inspect(t, writeCheckpoint(t, qwenCfg, ts), checkpoint.Options{})
	require.ErrorIs(t, err, checkpoint.ErrMismatch)
	require.Contains(t, err.Error(), "layer 1 holds 3 routed experts, but")
	wrong := strings.Replace(qwenCfg, `"num_experts":4`, `"num_experts":4,"num_experts_per_layer":[4,2]`, 1)
	_, err = inspect(t, writeCheckpoint(t, wrong, ts), checkpoint.Options{})
	require.ErrorIs(t, err, checkpoint.ErrMismatch)
	require.Contains(t, err.Error(), "says 2 (num_experts_per_layer)")
}

// Damaged safetensors files are errors naming the file, never panics.
func TestInspectDamagedSafetensors(t *testing.T) {
	header := func(js string) []byte {
		b := make([]byte, 8, 8+len(js))
		binary.LittleEndian.PutUint64(b, uint64(len(js)))
		return append(b, js...)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"shorter than 8 bytes", []byte{1, 2, 3}, "shorter than the 8-byte header length"},
		{"header length beyond the file", append(header(`{}`)[:0:0], func() []byte { b := header(`{}`); binary.LittleEndian.PutUint64(b, 1<<20); return b }()...), "larger than the file"},
		{"truncated data", header(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`), "outside the 0-byte data buffer"},
		{"overlapping offsets", append(header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`), make([]byte, 12)...), "overlap"},
		{"not JSON", header(`nope`), "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ct.WriteFile(t, dir, "config.json", qwenCfg)
			p := filepath.Join(dir, "model.safetensors")
			require.NoError(t, os.WriteFile(p, tt.data, 0o644))
			_, err := inspect(t, dir, checkpoint.Options{})
			require.Error(t, err)
			require.ErrorIs(t, err, fault.ErrIO)
			require.ErrorIs(t, err, safetensors.ErrFormat)
			require.Contains(t, err.Error(), p)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestInspectWithoutWeights(t *testing.T) {
	dir := t.TempDir()
	ct.WriteFile(t, dir, "config.json", qwenCfg)
	in, err := inspect(t, dir, checkpoint.Options{})
	require.NoError(t, err)
	require.False(t, in.WeightsInspected)
	require.Equal(t, checkpoint.Unknown, in.Layout)
	require.Equal(t, "bf16 (16-bit)", in.Quant.String())
	require.Equal(t, "dtype", in.Quant.Source)
	require.Len(t, in.Warnings, 1)
}

func TestInspectConfigOnly(t *testing.T) {
	cfg, err := modelconfig.Parse([]byte(qwenCfg))
	require.NoError(t, err)
	in := checkpoint.InspectConfig("/cache/x", cfg, nil, "")
	require.True(t, in.Remote)
	require.Equal(t, checkpoint.Unknown, in.Layout)
	require.Equal(t, "bf16 (16-bit)", in.Quant.String())
	require.False(t, in.Sidecar.Present)

	dir := writeCheckpoint(t, qwenCfg, perExpert(2, 4))
	l := writeSidecar(t, dir, 2, sidecar.Quant{Mode: "bf16", Bits: 16}, bf16Components())
	in = checkpoint.InspectConfig("/cache/x", cfg, l, "")
	require.Equal(t, checkpoint.Engine, in.Layout)
	require.True(t, in.Sidecar.Valid)
	require.False(t, in.Sidecar.Verified)

	l.NumExperts = 8
	in = checkpoint.InspectConfig("/cache/x", cfg, l, "")
	require.False(t, in.Sidecar.Valid)
	require.Contains(t, in.Sidecar.Err.Error(), "num_experts 8")
}

func TestQuantFromConfig(t *testing.T) {
	tests := []struct {
		cfg  string
		want string
	}{
		{`{"model_type":"deepseek_v4","quantization_config":{"quant_method":"fp8","weight_block_size":[128,128]}}`, "mxfp4 (4-bit)"},
		{`{"model_type":"gpt_oss","quantization_config":{"quant_method":"mxfp4"}}`, "mxfp4 (4-bit)"},
		{`{"model_type":"qwen3_moe","quantization":{"bits":4,"group_size":64,"model.layers.0.mlp.switch_mlp.gate_proj":{"bits":2,"group_size":32}}}`, "affine (2-bit, group 32)"},
		{`{"model_type":"qwen3_moe","quantization":{"bits":4,"group_size":64,"model.layers.0.mlp.gate":{"bits":8,"group_size":64}}}`, "affine (4-bit, group 64)"},
		{`{"model_type":"qwen3_moe","torch_dtype":"float16"}`, "f16 (16-bit)"},
		{`{"model_type":"qwen3_moe"}`, "unknown"},
	}
	for _, tt := range tests {
		cfg, err := modelconfig.Parse([]byte(tt.cfg))
		require.NoError(t, err)
		in := checkpoint.InspectConfig("", cfg, nil, "")
		require.Equal(t, tt.want, in.Quant.String(), tt.cfg)
	}
}

func TestDraftProbe(t *testing.T) {
	draft := func(t *testing.T, dir string, weights bool) {
		ct.WriteFile(t, dir, "config.json", `{"model_type":"qwen3","architectures":["DFlashDraftModel"]}`)
		if weights {
			ct.WriteSafetensors(t, filepath.Join(dir, "model.safetensors"), []ct.Tensor{ct.T("fc.weight", "BF16", 4, 4)})
		}
	}
	t.Run("explicit usable", func(t *testing.T) {
		dir := writeCheckpoint(t, qwenCfg, perExpert(2, 4))
		d := filepath.Join(t.TempDir(), "draft")
		draft(t, d, true)
		in, err := inspect(t, dir, checkpoint.Options{DraftDir: d})
		require.NoError(t, err)
		require.Equal(t, checkpoint.DraftProbe{Dir: d, Explicit: true, Usable: true}, in.Draft)
	})
	t.Run("explicit missing", func(t *testing.T) {
		dir := writeCheckpoint(t, qwenCfg, perExpert(2, 4))
		in, err := inspect(t, dir, checkpoint.Options{DraftDir: "/nonexistent/draft"})
		require.NoError(t, err)
		require.False(t, in.Draft.Usable)
		require.Contains(t, in.Draft.Reason, "/nonexistent/draft")
	})
	t.Run("discovered without weights", func(t *testing.T) {
		dir := writeCheckpoint(t, qwenCfg, perExpert(2, 4))
		draft(t, filepath.Join(dir, "dflash_draft"), false)
		in, err := inspect(t, dir, checkpoint.Options{})
		require.NoError(t, err)
		require.Equal(t, filepath.Join(dir, "dflash_draft"), in.Draft.Dir)
		require.False(t, in.Draft.Explicit)
		require.False(t, in.Draft.Usable)
		require.Contains(t, in.Draft.Reason, "no model*.safetensors")
	})
	t.Run("discovered sibling", func(t *testing.T) {
		dir := writeCheckpoint(t, qwenCfg, perExpert(2, 4))
		draft(t, dir+"-draft", true)
		in, err := inspect(t, dir, checkpoint.Options{})
		require.NoError(t, err)
		require.True(t, in.Draft.Usable)
	})
	t.Run("none", func(t *testing.T) {
		dir := writeCheckpoint(t, qwenCfg, perExpert(2, 4))
		in, err := inspect(t, dir, checkpoint.Options{})
		require.NoError(t, err)
		require.Equal(t, checkpoint.DraftProbe{}, in.Draft)
	})
}

func TestMTPTensors(t *testing.T) {
	ts := append(perExpert(2, 4), ct.T("mtp.fc.weight", "BF16", 64, 128),
		ct.T("mtp.layers.0.mlp.experts.0.gate_proj.weight", "BF16", 32, 64))
	dir := writeCheckpoint(t, qwenCfg, ts)
	in, err := inspect(t, dir, checkpoint.Options{})
	require.NoError(t, err)
	require.True(t, in.MTPTensors)
	require.Equal(t, []int{0}, in.Experts.MTPLayers)
}

// MLX "mixed" recipes store some projections with more bits: the most
// common quant is reported and the mix is a warning.
func TestMixedQuantWarns(t *testing.T) {
	cfg := `{"model_type":"qwen3_moe","hidden_size":64,"num_hidden_layers":2,"num_experts":2,"moe_intermediate_size":32,
		"quantization":{"bits":4,"group_size":32,"model.layers.0.mlp.switch_mlp.down_proj":{"bits":6},"model.layers.1.mlp.switch_mlp.down_proj":{"bits":6}}}`
	var ts []ct.Tensor
	for l := range 2 {
		q := fmt.Sprintf("model.layers.%d.mlp.switch_mlp.", l)
		ts = append(ts,
			ct.T(q+"gate_proj.weight", "U32", 2, 32, 8), ct.T(q+"gate_proj.scales", "BF16", 2, 32, 2), ct.T(q+"gate_proj.biases", "BF16", 2, 32, 2),
			ct.T(q+"up_proj.weight", "U32", 2, 32, 8), ct.T(q+"up_proj.scales", "BF16", 2, 32, 2), ct.T(q+"up_proj.biases", "BF16", 2, 32, 2),
			ct.T(q+"down_proj.weight", "U32", 2, 64, 6), ct.T(q+"down_proj.scales", "BF16", 2, 64, 1), ct.T(q+"down_proj.biases", "BF16", 2, 64, 1))
	}
	dir := writeCheckpoint(t, cfg, ts)
	in, err := inspect(t, dir, checkpoint.Options{})
	require.NoError(t, err)
	require.Equal(t, "affine (4-bit, group 32)", in.Quant.String())
	require.Len(t, in.Warnings, 1, "the per-module overrides agree with the tensors; only the mix is reported")
	require.Contains(t, in.Warnings[0], "affine (6-bit, group 32) ×2")
	require.Contains(t, in.Warnings[0], "affine (4-bit, group 32) ×4")
}
