package qwen35moe_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/maniac-ai/mach/pkg/model/qwen35moe"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/preflight"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/stretchr/testify/require"
)

// rewrite copies fixture name into a temporary directory, passing every
// tensor through edit (which may rename it, change it, drop it by returning
// false, or add more through extra), and returns the directory.
func rewrite(t *testing.T, name string, edit func(ts *safetensors.WriteTensor) bool, extra func(all map[string]safetensors.WriteTensor) []safetensors.WriteTensor) string {
	t.Helper()
	fx, err := fixture.Load(name)
	require.NoError(t, err)
	f, err := safetensors.Open(filepath.Join(fx.Dir, "model.safetensors"))
	require.NoError(t, err)
	defer f.Close()
	all := map[string]safetensors.WriteTensor{}
	var out []safetensors.WriteTensor
	for _, ti := range f.Header().Tensors {
		wt := safetensors.WriteTensor{Name: ti.Name, DType: ti.DType, Shape: append([]int64(nil), ti.Shape...), Data: append([]byte(nil), f.TensorBytes(ti)...)}
		all[wt.Name] = wt
		if edit == nil || edit(&wt) {
			out = append(out, wt)
		}
	}
	if extra != nil {
		out = append(out, extra(all)...)
	}
	dir := t.TempDir()
	w, err := os.Create(filepath.Join(dir, "model.safetensors"))
	require.NoError(t, err)
	require.NoError(t, safetensors.Write(w, out, map[string]string{"format": "pt"}))
	require.NoError(t, w.Close())
	cfg, err := os.ReadFile(filepath.Join(fx.Dir, "config.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644))
	return dir
}

func tryLoad(t *testing.T, dir string, b kernels.Backend) (*qwen35moe.Model, error) {
	t.Helper()
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	m, err := qwen35moe.Load(t.Context(), dir, cfg, b, qwen35moe.LoadOptions{})
	if err == nil {
		t.Cleanup(func() { _ = m.Close() })
	}
	return m, err
}

func TestLayoutDetection(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	for _, tc := range []struct {
		name    string
		prefix  string
		mlx     bool
		shifted bool
	}{
		{"qwen3_5_moe", "model.language_model.", false, false},
		{"qwen3_5_moe_bf16", "model.language_model.", false, false},
		{"qwen3_5_moe_mlx", "language_model.model.", true, true},
		{"qwen3_5_moe_mlx4", "language_model.model.", true, true},
	} {
		_, m := load(t, tc.name, b)
		l := m.Layout()
		require.Equal(t, tc.prefix, l.Prefix, tc.name)
		require.Equal(t, tc.mlx, l.MLX, tc.name)
		require.Equal(t, tc.shifted, l.ShiftedNorms, tc.name)
		require.Contains(t, l.Why, "conv1d layout", tc.name)
		require.Nil(t, m.MTP(), "%s has no MTP head", tc.name)
	}
}

// A checkpoint whose conv1d layout says one converter and whose names say
// the other is refused: the norm shift cannot be known.
func TestLayoutConflictRefused(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	// mlx-lm names with transformers' [C, 1, K] convolution.
	dir := rewrite(t, "qwen3_5_moe_mlx", func(ts *safetensors.WriteTensor) bool {
		if strings.HasSuffix(ts.Name, "conv1d.weight") {
			ts.Shape = []int64{ts.Shape[0], 1, ts.Shape[1]}
		}
		return true
	}, nil)
	_, err := tryLoad(t, dir, b)
	require.ErrorIs(t, err, fault.ErrUnsupported)
	require.ErrorContains(t, err, "inconsistent conversion")
	require.ErrorContains(t, err, "refusing to guess")

	// transformers names with mlx-lm's [C, K, 1] convolution.
	dir = rewrite(t, "qwen3_5_moe", func(ts *safetensors.WriteTensor) bool {
		if strings.HasSuffix(ts.Name, "conv1d.weight") {
			ts.Shape = []int64{ts.Shape[0], ts.Shape[2], 1}
		}
		return true
	}, nil)
	_, err = tryLoad(t, dir, b)
	require.ErrorContains(t, err, "inconsistent conversion")
}

// The text-only naming (Qwen3_5MoeForCausalLM: model.layers.*) loads and
// computes the same logits as the wrapped one.
func TestTextOnlyNaming(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	fx, err := fixture.Load("qwen3_5_moe")
	require.NoError(t, err)
	dir := rewrite(t, "qwen3_5_moe", func(ts *safetensors.WriteTensor) bool {
		if strings.HasPrefix(ts.Name, "model.visual.") {
			return false
		}
		ts.Name = strings.Replace(ts.Name, "model.language_model.", "model.", 1)
		return true
	}, nil)
	m, err := tryLoad(t, dir, b)
	require.NoError(t, err)
	require.Equal(t, "model.", m.Layout().Prefix)
	seq := newSeq(t, m, kernels.F32)
	seq.Tokens, seq.Logits = fx.InputIDs, model.AllLogits
	out := modeltest.Forward(t, m, seq)
	for p := 0; p < fx.T; p++ {
		require.LessOrEqual(t, fixture.RelL2(out.Logits[0][p*fx.Vocab:(p+1)*fx.Vocab], fx.Row(p)), 1e-4, "position %d", p)
	}
}

// The vision tower is never bound: the weights the model reports exclude
// every model.visual.* byte.
func TestVisionTowerIgnored(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	fx, m := load(t, "qwen3_5_moe", b)
	h, err := safetensors.ReadFileHeader(filepath.Join(fx.Dir, "model.safetensors"))
	require.NoError(t, err)
	var total, visual int64
	for _, ti := range h.Tensors {
		total += ti.Size()
		if strings.HasPrefix(ti.Name, "model.visual.") {
			visual += ti.Size()
		}
	}
	require.Positive(t, visual)
	require.LessOrEqual(t, m.Info().WeightBytes, total-visual)
	info := m.Info()
	require.Less(t, info.ActiveBytes, info.WeightBytes)
	t.Logf("%d weight bytes bound of %d stored (%d in the vision tower), %d active per token", info.WeightBytes, total, visual, info.ActiveBytes)
}

// mtpTensors makes an MTP head from the fixture's own tensors: layer 3 (a
// full-attention layer) as mtp.layers.0, the final norm as its norms, and
// an fc of the right shape.
func mtpTensors(all map[string]safetensors.WriteTensor) []safetensors.WriteTensor {
	var out []safetensors.WriteTensor
	const from = "model.language_model.layers.3."
	for name, ts := range all {
		if strings.HasPrefix(name, from) {
			ts.Name = "mtp.layers.0." + strings.TrimPrefix(name, from)
			out = append(out, ts)
		}
	}
	norm := all["model.language_model.norm.weight"]
	for _, n := range []string{"mtp.pre_fc_norm_embedding.weight", "mtp.pre_fc_norm_hidden.weight", "mtp.norm.weight"} {
		t := norm
		t.Name = n
		out = append(out, t)
	}
	o := all["model.language_model.layers.0.linear_attn.out_proj.weight"] // [64, 64] f32
	fc := safetensors.WriteTensor{Name: "mtp.fc.weight", DType: o.DType, Shape: []int64{o.Shape[0], 2 * o.Shape[1]}}
	for r := int64(0); r < o.Shape[0]; r++ {
		row := o.Data[r*o.Shape[1]*4 : (r+1)*o.Shape[1]*4]
		fc.Data = append(append(fc.Data, row...), row...)
	}
	return append(out, fc)
}

// An MTP head in the checkpoint is bound and kept; it changes nothing in
// the model's own logits. Half an MTP head is refused.
func TestMTPHead(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	fx, err := fixture.Load("qwen3_5_moe")
	require.NoError(t, err)
	dir := rewrite(t, "qwen3_5_moe", nil, mtpTensors)
	m, err := tryLoad(t, dir, b)
	require.NoError(t, err)
	h := m.MTP()
	require.NotNil(t, h)
	require.Len(t, h.Layers, 1)
	l := h.Layers[0]
	require.True(t, l.Attn.OutputGate)
	require.Equal(t, 0, l.Attn.Layer, "the MTP layer has its own cache layer 0")
	require.Equal(t, 128, h.FC.W.Cols())
	require.Equal(t, 8, h.Store.Experts(0))
	require.Contains(t, m.Layout().Why, "MTP head")
	seq := newSeq(t, m, kernels.F32)
	seq.Tokens, seq.Logits = fx.InputIDs, model.AllLogits
	out := modeltest.Forward(t, m, seq)
	for p := 0; p < fx.T; p++ {
		require.LessOrEqual(t, fixture.RelL2(out.Logits[0][p*fx.Vocab:(p+1)*fx.Vocab], fx.Row(p)), 1e-4)
	}

	partial := rewrite(t, "qwen3_5_moe", nil, func(all map[string]safetensors.WriteTensor) []safetensors.WriteTensor {
		var keep []safetensors.WriteTensor
		for _, ts := range mtpTensors(all) {
			if !strings.HasPrefix(ts.Name, "mtp.layers.") {
				keep = append(keep, ts)
			}
		}
		return keep
	})
	_, err = tryLoad(t, partial, b)
	require.ErrorContains(t, err, "MTP head")
	require.ErrorContains(t, err, "mtp.layers.0.input_layernorm.weight")

	// mlx-lm names next to an MTP head: an inconsistent conversion.
	mixed := rewrite(t, "qwen3_5_moe_mlx", nil, func(all map[string]safetensors.WriteTensor) []safetensors.WriteTensor {
		return []safetensors.WriteTensor{{Name: "mtp.fc.weight", DType: safetensors.F32, Shape: []int64{64, 128}, Data: make([]byte, 64*128*4)}}
	})
	_, err = tryLoad(t, mixed, b)
	require.ErrorContains(t, err, "inconsistent conversion")
}

func TestOptions(t *testing.T) {
	fx, err := fixture.Load("qwen3_5_moe")
	require.NoError(t, err)
	cfg, err := modelconfig.Load(fx.Dir)
	require.NoError(t, err)
	o, err := qwen35moe.ParseOptions(cfg)
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, true, false}, o.Linear)
	require.Equal(t, 8, o.RoPE.Dims, "partial rotary: 0.25 of head_dim 32")
	require.Equal(t, 32, o.RoPE.HeadDim)
	require.Equal(t, 2*2*16+4*16, o.ConvDim())
	require.Equal(t, []int{8, 8, 8, 8}, o.Experts)

	for _, tc := range []struct {
		edit, want string
	}{
		{`"attn_output_gate": false,`, "attn_output_gate false"},
		{`"norm_topk_prob": false,`, "norm_topk_prob false"},
		{`"hidden_act": "gelu",`, `hidden_act "gelu"`},
		{`"linear_num_value_heads": 3,`, "not a multiple"},
	} {
		raw, err := os.ReadFile(filepath.Join(fx.Dir, "config.json"))
		require.NoError(t, err)
		s := strings.Replace(string(raw), `"text_config": {`, `"text_config": {`+tc.edit, 1)
		if strings.Contains(tc.edit, "hidden_act") {
			s = strings.Replace(s, `"hidden_act": "silu",`, "", 1)
		}
		if strings.Contains(tc.edit, "linear_num_value_heads") {
			s = strings.Replace(s, `"linear_num_value_heads": 4,`, "", 1)
		}
		c, err := modelconfig.Parse([]byte(s))
		require.NoError(t, err, tc.edit)
		_, err = qwen35moe.ParseOptions(c)
		require.ErrorContains(t, err, tc.want)
		require.ErrorIs(t, err, fault.ErrUnsupported)
	}
}

// mach check's memory estimate of the cache is what kvcache.Hybrid holds:
// f16 keys and values of the full-attention layers at the context length,
// plus both copies of every linear layer's state.
func TestCacheBytesMatchPreflight(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	for _, name := range []string{"qwen3_5_moe", "qwen3_5_moe_mlx4"} {
		fx, m := load(t, name, b)
		cfg, err := modelconfig.Load(fx.Dir)
		require.NoError(t, err)
		const ctx = 512
		spec := m.CacheSpec(ctx, kernels.F16)
		c, err := kvcache.NewHybrid(b, kvcache.HybridSpec{Layers: spec.Layers, DType: kernels.F16, Capacity: ctx, Initial: ctx})
		require.NoError(t, err)
		require.Equal(t, preflight.KVBytes(cfg, registry.KVHybridGDN, ctx), int64(c.Bytes()), name)
		c.Release()
	}
}
