// Package gemma4test writes synthetic gemma4 checkpoints for benchmarks:
// Gemma-4-26B-A4B's per-layer shapes (architecture notes §4.1) with random
// MLX affine weights in mlx-lm's naming, so throughput and memory can be
// measured without downloading the model. The weights are meaningless; the
// numbers they produce are not.
package gemma4test

import (
	"fmt"
	"math/rand/v2"

	"github.com/maniac-ai/mach/pkg/model/synthetic"
)

// Shape is a gemma4 geometry with its quantization.
type Shape struct {
	Hidden, Layers int
	// Every Pattern-th layer (and the last) is full attention; the others
	// slide over Window tokens.
	Pattern, Window int
	Heads           int
	// Sliding layers: KVHeads × HeadDim; full layers: GlobalKVHeads ×
	// GlobalHeadDim with values from the key projection.
	KVHeads, HeadDim             int
	GlobalKVHeads, GlobalHeadDim int
	Intermediate                 int // the dense MLP
	Experts, TopK, Width         int
	Vocab                        int
	Bits, Group, RouterBits      int
}

// Gemma4_26B_A4B returns Gemma-4-26B-A4B's shapes with layers layers (the
// last one full attention), MLX affine 4-bit group 64, routers at 8 bits
// as mlx-community's conversions keep them.
func Gemma4_26B_A4B(layers int) Shape {
	return Shape{Hidden: 2816, Layers: layers, Pattern: 6, Window: 1024, Heads: 16,
		KVHeads: 8, HeadDim: 256, GlobalKVHeads: 2, GlobalHeadDim: 512, Intermediate: 2112,
		Experts: 128, TopK: 8, Width: 704, Vocab: 262144, Bits: 4, Group: 64, RouterBits: 8}
}

// Full reports whether layer l is full attention.
func (s Shape) Full(l int) bool { return (l+1)%s.Pattern == 0 || l == s.Layers-1 }

// KVBytesPerToken is the key/value storage one token takes in every layer
// at elem bytes per value (before any window bounds the sliding layers).
func (s Shape) KVBytesPerToken(elem int) int {
	n := 0
	for l := 0; l < s.Layers; l++ {
		if s.Full(l) {
			n += 2 * s.GlobalKVHeads * s.GlobalHeadDim
		} else {
			n += 2 * s.KVHeads * s.HeadDim
		}
	}
	return n * elem
}

// Write writes config.json, one safetensors shard per layer plus one for
// the embedding (the tied head) and the shard index into dir. It returns
// the total tensor bytes. The config names no end-of-sequence token, so
// generation always runs to its token budget.
func Write(dir string, s Shape, seed uint64) (int64, error) {
	rng := rand.New(rand.NewPCG(seed, 0x6e4))
	c := synthetic.New(dir, map[string]string{"format": "mlx"})
	// linear adds a quantized [lead..., out, in] weight whose values are
	// zero-mean with std ≈ 1/√in.
	linear := func(name string, lead, out, in, bits int) {
		c.Add(synthetic.Affine(rng, name, lead, out, in, bits, s.Group)...)
	}
	vector := func(name string, n int, v float32) { c.Add(synthetic.Const(name, n, v)) }
	overrides := map[string]any{}
	types := make([]string, s.Layers)
	perLayer := map[string]any{}
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("language_model.model.layers.%d.", l)
		for _, n := range []string{"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
			"post_feedforward_layernorm", "pre_feedforward_layernorm_2", "post_feedforward_layernorm_1", "post_feedforward_layernorm_2"} {
			vector(p+n+".weight", s.Hidden, 1)
		}
		vector(p+"layer_scalar", 1, 1)
		kv, hd := s.KVHeads, s.HeadDim
		types[l] = "sliding_attention"
		if s.Full(l) {
			kv, hd = s.GlobalKVHeads, s.GlobalHeadDim
			types[l] = "full_attention"
			perLayer[fmt.Sprint(l)] = map[string]int{"head_dim": hd, "num_key_value_heads": kv}
		}
		vector(p+"self_attn.q_norm.weight", hd, 1)
		vector(p+"self_attn.k_norm.weight", hd, 1)
		linear(p+"self_attn.q_proj", 1, s.Heads*hd, s.Hidden, s.Bits)
		linear(p+"self_attn.k_proj", 1, kv*hd, s.Hidden, s.Bits)
		if !s.Full(l) {
			linear(p+"self_attn.v_proj", 1, kv*hd, s.Hidden, s.Bits)
		}
		linear(p+"self_attn.o_proj", 1, s.Hidden, s.Heads*hd, s.Bits)
		linear(p+"mlp.gate_proj", 1, s.Intermediate, s.Hidden, s.Bits)
		linear(p+"mlp.up_proj", 1, s.Intermediate, s.Hidden, s.Bits)
		linear(p+"mlp.down_proj", 1, s.Hidden, s.Intermediate, s.Bits)
		linear(p+"router.proj", 1, s.Experts, s.Hidden, s.RouterBits)
		overrides[p+"router.proj"] = map[string]int{"group_size": s.Group, "bits": s.RouterBits}
		vector(p+"router.scale", s.Hidden, 1)
		vector(p+"router.per_expert_scale", s.Experts, 1)
		linear(p+"experts.switch_glu.gate_proj", s.Experts, s.Width, s.Hidden, s.Bits)
		linear(p+"experts.switch_glu.up_proj", s.Experts, s.Width, s.Hidden, s.Bits)
		linear(p+"experts.switch_glu.down_proj", s.Experts, s.Hidden, s.Width, s.Bits)
		if err := c.Flush(synthetic.ShardName(l+1, s.Layers+1)); err != nil {
			return 0, err
		}
	}
	linear("language_model.model.embed_tokens", 1, s.Vocab, s.Hidden, s.Bits)
	vector("language_model.model.norm.weight", s.Hidden, 1)
	if err := c.Flush(synthetic.ShardName(s.Layers+1, s.Layers+1)); err != nil {
		return 0, err
	}
	q := map[string]any{"group_size": s.Group, "bits": s.Bits, "mode": "affine"}
	for k, v := range overrides {
		q[k] = v
	}
	text := map[string]any{
		"model_type": "gemma4_text", "hidden_size": s.Hidden, "num_hidden_layers": s.Layers, "layer_types": types,
		"num_attention_heads": s.Heads, "num_key_value_heads": s.KVHeads, "head_dim": s.HeadDim,
		"per_layer_config": perLayer, "attention_k_eq_v": true, "sliding_window": s.Window,
		"intermediate_size": s.Intermediate, "enable_moe_block": true, "num_experts": s.Experts,
		"top_k_experts": s.TopK, "moe_intermediate_size": s.Width, "hidden_activation": "gelu_pytorch_tanh",
		"final_logit_softcapping": 30.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 262144,
		"vocab_size": s.Vocab, "tie_word_embeddings": true, "hidden_size_per_layer_input": 0,
		"num_kv_shared_layers": 0, "use_double_wide_mlp": false,
		"rope_parameters": map[string]any{
			"sliding_attention": map[string]any{"rope_type": "default", "rope_theta": 10000.0},
			"full_attention":    map[string]any{"rope_type": "proportional", "rope_theta": 1e6, "partial_rotary_factor": 0.25},
		},
	}
	cfg := map[string]any{
		"architectures": []string{"Gemma4ForConditionalGeneration"}, "model_type": "gemma4",
		"text_config": text, "tie_word_embeddings": true, "quantization": q, "quantization_config": q,
	}
	return c.Finish(cfg)
}
