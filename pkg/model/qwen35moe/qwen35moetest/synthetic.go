// Package qwen35moetest writes synthetic qwen3_5_moe checkpoints for
// benchmarks: Qwen3.6-35B-A3B's per-layer shapes and its 3:1 pattern of
// Gated DeltaNet and full-attention layers, with fewer layers and random
// MLX affine weights, in mlx-lm's layout (language_model.model. names,
// conv1d [C, K, 1], shifted norms). The weights are meaningless; the speeds
// and memory they measure are not.
package qwen35moetest

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/maniac-ai/mach/pkg/model/synthetic"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/safetensors"
)

// Shape is a qwen3_5_moe geometry with its quantization.
type Shape struct {
	Hidden, Layers          int
	Heads, KVHeads, HeadDim int
	LinearKeyHeads          int
	LinearValueHeads        int
	LinearKeyDim            int
	LinearValueDim          int
	ConvKernel              int
	Experts, TopK, Width    int
	SharedWidth             int
	Vocab                   int
	Bits, Group             int
	GateBits                int // mlp.gate and shared_expert_gate
}

// Qwen36_35B_A3B returns Qwen3.6-35B-A3B's shapes with layers layers (layer
// i is full attention when (i+1)%4 == 0), MLX affine 4-bit group 64, routers
// and the shared-expert gate at 8 bits.
func Qwen36_35B_A3B(layers int) Shape {
	return Shape{Hidden: 2048, Layers: layers, Heads: 16, KVHeads: 2, HeadDim: 256,
		LinearKeyHeads: 16, LinearValueHeads: 32, LinearKeyDim: 128, LinearValueDim: 128, ConvKernel: 4,
		Experts: 256, TopK: 8, Width: 512, SharedWidth: 512, Vocab: 248320, Bits: 4, Group: 64, GateBits: 8}
}

// Linear reports whether layer i is a Gated DeltaNet layer.
func (s Shape) Linear(i int) bool { return (i+1)%4 != 0 }

// ConvDim is the convolution's channel count.
func (s Shape) ConvDim() int {
	return 2*s.LinearKeyHeads*s.LinearKeyDim + s.LinearValueHeads*s.LinearValueDim
}

// Write writes config.json, one safetensors shard per layer plus one for
// the embedding and head, and the shard index into dir. It returns the
// total tensor bytes.
func Write(dir string, s Shape, seed uint64) (int64, error) {
	rng := rand.New(rand.NewPCG(seed, 0x35))
	c := synthetic.New(dir, map[string]string{"format": "mlx"})
	// linear adds a quantized [lead..., out, in] weight whose values are
	// zero-mean with std ≈ 1/√in.
	linear := func(name string, lead, out, in, bits int) {
		c.Add(synthetic.Affine(rng, name, lead, out, in, bits, s.Group)...)
	}
	vec := func(name string, dt safetensors.DType, shape []int64, f func(i int) float32) {
		n := 1
		for _, d := range shape {
			n *= int(d)
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = f(i)
		}
		var data []byte
		if dt == safetensors.F32 {
			data = make([]byte, 4*n)
			for i, x := range v {
				binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(x))
			}
		} else {
			data = quant.BF16Bytes(v)
		}
		c.Add(safetensors.WriteTensor{Name: name, DType: dt, Shape: shape, Data: data})
	}
	one := func(int) float32 { return 1 }
	overrides := map[string]any{}
	const pre = "language_model.model."
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("%slayers.%d.", pre, l)
		vec(p+"input_layernorm.weight", safetensors.BF16, []int64{int64(s.Hidden)}, one)
		vec(p+"post_attention_layernorm.weight", safetensors.BF16, []int64{int64(s.Hidden)}, one)
		if s.Linear(l) {
			a := p + "linear_attn."
			vw := s.LinearValueHeads * s.LinearValueDim
			linear(a+"in_proj_qkv", 1, s.ConvDim(), s.Hidden, s.Bits)
			linear(a+"in_proj_z", 1, vw, s.Hidden, s.Bits)
			linear(a+"in_proj_b", 1, s.LinearValueHeads, s.Hidden, s.Bits)
			linear(a+"in_proj_a", 1, s.LinearValueHeads, s.Hidden, s.Bits)
			linear(a+"out_proj", 1, s.Hidden, vw, s.Bits)
			vec(a+"conv1d.weight", safetensors.BF16, []int64{int64(s.ConvDim()), int64(s.ConvKernel), 1},
				func(int) float32 { return float32(rng.NormFloat64() * 0.5) })
			// Decays between about 0.5 and 0.99 per step, as trained models have.
			vec(a+"A_log", safetensors.F32, []int64{int64(s.LinearValueHeads)}, func(int) float32 { return float32(math.Log(0.02 + rng.Float64())) })
			vec(a+"dt_bias", safetensors.BF16, []int64{int64(s.LinearValueHeads)}, one)
			vec(a+"norm.weight", safetensors.BF16, []int64{int64(s.LinearValueDim)}, one)
		} else {
			qd, kd := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim
			linear(p+"self_attn.q_proj", 1, 2*qd, s.Hidden, s.Bits)
			linear(p+"self_attn.k_proj", 1, kd, s.Hidden, s.Bits)
			linear(p+"self_attn.v_proj", 1, kd, s.Hidden, s.Bits)
			linear(p+"self_attn.o_proj", 1, s.Hidden, qd, s.Bits)
			vec(p+"self_attn.q_norm.weight", safetensors.BF16, []int64{int64(s.HeadDim)}, one)
			vec(p+"self_attn.k_norm.weight", safetensors.BF16, []int64{int64(s.HeadDim)}, one)
		}
		linear(p+"mlp.gate", 1, s.Experts, s.Hidden, s.GateBits)
		linear(p+"mlp.shared_expert_gate", 1, 1, s.Hidden, s.GateBits)
		overrides[p+"mlp.gate"] = map[string]int{"group_size": s.Group, "bits": s.GateBits}
		overrides[p+"mlp.shared_expert_gate"] = map[string]int{"group_size": s.Group, "bits": s.GateBits}
		linear(p+"mlp.shared_expert.gate_proj", 1, s.SharedWidth, s.Hidden, s.Bits)
		linear(p+"mlp.shared_expert.up_proj", 1, s.SharedWidth, s.Hidden, s.Bits)
		linear(p+"mlp.shared_expert.down_proj", 1, s.Hidden, s.SharedWidth, s.Bits)
		linear(p+"mlp.switch_mlp.gate_proj", s.Experts, s.Width, s.Hidden, s.Bits)
		linear(p+"mlp.switch_mlp.up_proj", s.Experts, s.Width, s.Hidden, s.Bits)
		linear(p+"mlp.switch_mlp.down_proj", s.Experts, s.Hidden, s.Width, s.Bits)
		if err := c.Flush(synthetic.ShardName(l+1, s.Layers+1)); err != nil {
			return 0, err
		}
	}
	linear(pre+"embed_tokens", 1, s.Vocab, s.Hidden, s.Bits)
	linear("language_model.lm_head", 1, s.Vocab, s.Hidden, s.Bits)
	vec(pre+"norm.weight", safetensors.BF16, []int64{int64(s.Hidden)}, one)
	if err := c.Flush(synthetic.ShardName(s.Layers+1, s.Layers+1)); err != nil {
		return 0, err
	}
	q := map[string]any{"group_size": s.Group, "bits": s.Bits, "mode": "affine"}
	for k, v := range overrides {
		q[k] = v
	}
	layerTypes := make([]string, s.Layers)
	for i := range layerTypes {
		layerTypes[i] = "full_attention"
		if s.Linear(i) {
			layerTypes[i] = "linear_attention"
		}
	}
	text := map[string]any{
		"model_type": "qwen3_5_moe_text", "hidden_size": s.Hidden, "num_hidden_layers": s.Layers,
		"num_attention_heads": s.Heads, "num_key_value_heads": s.KVHeads, "head_dim": s.HeadDim,
		"linear_num_key_heads": s.LinearKeyHeads, "linear_num_value_heads": s.LinearValueHeads,
		"linear_key_head_dim": s.LinearKeyDim, "linear_value_head_dim": s.LinearValueDim,
		"linear_conv_kernel_dim": s.ConvKernel, "layer_types": layerTypes, "full_attention_interval": 4,
		"num_experts": s.Experts, "num_experts_per_tok": s.TopK, "moe_intermediate_size": s.Width,
		"shared_expert_intermediate_size": s.SharedWidth, "vocab_size": s.Vocab, "rms_norm_eps": 1e-6,
		"max_position_embeddings": 262144, "tie_word_embeddings": false, "hidden_act": "silu",
		"attn_output_gate": true, "mtp_num_hidden_layers": 1,
		"rope_parameters": map[string]any{"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
			"mrope_section": []int{11, 11, 10}, "mrope_interleaved": true},
		"eos_token_id": 248044,
	}
	cfg := map[string]any{
		"architectures": []string{"Qwen3_5MoeForConditionalGeneration"}, "model_type": "qwen3_5_moe",
		"text_config": text, "tie_word_embeddings": false, "quantization": q, "quantization_config": q,
	}
	return c.Finish(cfg)
}
