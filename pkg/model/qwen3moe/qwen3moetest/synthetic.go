// Package qwen3moetest writes synthetic qwen3_moe checkpoints for
// benchmarks: real shapes (Qwen3-30B-A3B by default) with random MLX affine
// weights, so throughput and memory can be measured without downloading a
// model. The weights are meaningless; the numbers they produce are not.
package qwen3moetest

import (
	"fmt"
	"math/rand/v2"

	"github.com/maniac-ai/mach/pkg/model/synthetic"
)

// Shape is a qwen3_moe geometry with its quantization.
type Shape struct {
	Hidden, Layers          int
	Heads, KVHeads, HeadDim int
	Experts, TopK, Width    int
	Vocab                   int
	Bits, Group             int
	RouterBits              int
}

// Qwen3_30B_A3B returns Qwen3-30B-A3B's shapes with layers layers, MLX
// affine 4-bit group 64, routers at 8 bits.
func Qwen3_30B_A3B(layers int) Shape {
	return Shape{Hidden: 2048, Layers: layers, Heads: 32, KVHeads: 4, HeadDim: 128,
		Experts: 128, TopK: 8, Width: 768, Vocab: 151936, Bits: 4, Group: 64, RouterBits: 8}
}

// Write writes config.json, one safetensors shard per layer plus one for
// the embedding and head, and the shard index into dir. It returns the
// total tensor bytes. The config names no end-of-sequence token, so
// generation always runs to its token budget.
func Write(dir string, s Shape, seed uint64) (int64, error) {
	rng := rand.New(rand.NewPCG(seed, 0x517))
	c := synthetic.New(dir, map[string]string{"format": "mlx"})
	// linear adds a quantized [lead..., out, in] weight.
	linear := func(name string, lead, out, in, bits int) {
		c.Add(synthetic.Affine(rng, name, lead, out, in, bits, s.Group)...)
	}
	ones := func(name string, n int) { c.Add(synthetic.Const(name, n, 1)) }
	overrides := map[string]any{}
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ones(p+"input_layernorm.weight", s.Hidden)
		ones(p+"post_attention_layernorm.weight", s.Hidden)
		ones(p+"self_attn.q_norm.weight", s.HeadDim)
		ones(p+"self_attn.k_norm.weight", s.HeadDim)
		linear(p+"self_attn.q_proj", 1, s.Heads*s.HeadDim, s.Hidden, s.Bits)
		linear(p+"self_attn.k_proj", 1, s.KVHeads*s.HeadDim, s.Hidden, s.Bits)
		linear(p+"self_attn.v_proj", 1, s.KVHeads*s.HeadDim, s.Hidden, s.Bits)
		linear(p+"self_attn.o_proj", 1, s.Hidden, s.Heads*s.HeadDim, s.Bits)
		linear(p+"mlp.gate", 1, s.Experts, s.Hidden, s.RouterBits)
		overrides[p+"mlp.gate"] = map[string]int{"group_size": s.Group, "bits": s.RouterBits}
		linear(p+"mlp.switch_mlp.gate_proj", s.Experts, s.Width, s.Hidden, s.Bits)
		linear(p+"mlp.switch_mlp.up_proj", s.Experts, s.Width, s.Hidden, s.Bits)
		linear(p+"mlp.switch_mlp.down_proj", s.Experts, s.Hidden, s.Width, s.Bits)
		if err := c.Flush(synthetic.ShardName(l+1, s.Layers+1)); err != nil {
			return 0, err
		}
	}
	linear("model.embed_tokens", 1, s.Vocab, s.Hidden, s.Bits)
	linear("lm_head", 1, s.Vocab, s.Hidden, s.Bits)
	ones("model.norm.weight", s.Hidden)
	if err := c.Flush(synthetic.ShardName(s.Layers+1, s.Layers+1)); err != nil {
		return 0, err
	}
	q := map[string]any{"group_size": s.Group, "bits": s.Bits, "mode": "affine"}
	for k, v := range overrides {
		q[k] = v
	}
	cfg := map[string]any{
		"architectures": []string{"Qwen3MoeForCausalLM"}, "model_type": "qwen3_moe",
		"hidden_size": s.Hidden, "num_hidden_layers": s.Layers, "num_attention_heads": s.Heads,
		"num_key_value_heads": s.KVHeads, "head_dim": s.HeadDim, "vocab_size": s.Vocab,
		"num_experts": s.Experts, "num_experts_per_tok": s.TopK, "moe_intermediate_size": s.Width,
		"intermediate_size": 6144, "decoder_sparse_step": 1, "mlp_only_layers": []int{}, "norm_topk_prob": true,
		"rms_norm_eps": 1e-6, "rope_theta": 1e6, "max_position_embeddings": 40960, "tie_word_embeddings": false,
		"attention_bias": false, "hidden_act": "silu",
		"quantization": q, "quantization_config": q,
	}
	return c.Finish(cfg)
}
