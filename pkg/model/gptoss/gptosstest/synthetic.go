// Package gptosstest writes synthetic gpt_oss checkpoints for benchmarks:
// real shapes (gpt-oss-20b by default) in the original checkpoint's form —
// bf16 attention, router, embedding and head, MXFP4 experts as
// gate_up_proj_blocks/_scales with interleaved gate/up rows — with random
// weights, so throughput and memory can be measured without downloading a
// model. The weights are meaningless; the numbers they produce are not.
package gptosstest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/maniac-ai/mach/pkg/model/synthetic"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/safetensors"
)

// Shape is a gpt_oss geometry.
type Shape struct {
	Hidden, Layers          int
	Heads, KVHeads, HeadDim int
	Experts, TopK, Width    int
	Vocab                   int
	Window                  int
}

// GptOss20B returns gpt-oss-20b's shapes (hidden 2880, 64 query and 8 KV
// heads of 64, 32 experts of width 2880, top-4, vocabulary 201088, sliding
// window 128) with layers layers, alternating sliding and full attention
// from a sliding one.
func GptOss20B(layers int) Shape {
	return Shape{Hidden: 2880, Layers: layers, Heads: 64, KVHeads: 8, HeadDim: 64,
		Experts: 32, TopK: 4, Width: 2880, Vocab: 201088, Window: 128}
}

// ExpertBytes is one expert's stored size: MXFP4 codes, E8M0 scales and
// bf16 biases of gate_up and down.
func (s Shape) ExpertBytes() int64 {
	per := func(out, in int) int64 { return int64(out)*int64(in)/2 + int64(out)*int64(in/32) + 2*int64(out) }
	return per(2*s.Width, s.Hidden) + per(s.Hidden, s.Width)
}

// Write writes config.json, one safetensors shard per layer plus one for
// the embedding and head, and the shard index into dir. It returns the
// total tensor bytes. The config names no end-of-sequence token, so
// generation always runs to its token budget.
func Write(dir string, s Shape, seed uint64) (int64, error) {
	if s.Hidden%32 != 0 || s.Width%32 != 0 {
		return 0, fmt.Errorf("gptosstest: hidden %d and width %d must be multiples of 32 (MXFP4 groups)", s.Hidden, s.Width)
	}
	rng := rand.New(rand.NewPCG(seed, 0x055))
	c := synthetic.New(dir, nil)
	// Random bf16 weights with std 1/√in come from pools tiled at random
	// offsets: drawing every value would dominate the benchmark's setup.
	pools := map[int][]byte{}
	bf16 := func(name string, shape []int64, in int) {
		pool, ok := pools[in]
		if !ok {
			v := make([]float32, 1<<20)
			sd := 1 / math.Sqrt(float64(in))
			for i := range v {
				v[i] = float32(rng.NormFloat64() * sd)
			}
			pool = quant.BF16Bytes(v)
			pools[in] = pool
		}
		n := 2
		for _, d := range shape {
			n *= int(d)
		}
		data := make([]byte, n)
		for off := 0; off < n; {
			start := 2 * rng.IntN(len(pool)/2)
			off += copy(data[off:], pool[start:])
		}
		c.Add(safetensors.WriteTensor{Name: name, DType: safetensors.BF16, Shape: shape, Data: data})
	}
	vector := func(name string, n int, mean, sd float64) {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(mean + sd*rng.NormFloat64())
		}
		c.Add(safetensors.WriteTensor{Name: name, DType: safetensors.BF16, Shape: []int64{int64(n)}, Data: quant.BF16Bytes(v)})
	}
	// mxfp4 appends [E, out, in] experts as blocks and scales. Uniform
	// E2M1 codes have std ≈ 2.93, so the scale 2^-7 gives weights of std
	// ≈ 0.023 ≈ 1/√2880.
	mxfp4 := func(name string, out, in int) {
		blocks := make([]byte, s.Experts*out*in/2)
		synthetic.Fill(rng, blocks)
		scales := make([]byte, s.Experts*out*in/32)
		for i := range scales {
			scales[i] = byte(119 + rng.IntN(3))
		}
		e, o, g := int64(s.Experts), int64(out), int64(in/32)
		c.Add(safetensors.WriteTensor{Name: name + "_blocks", DType: safetensors.U8, Shape: []int64{e, o, g, 16}, Data: blocks},
			safetensors.WriteTensor{Name: name + "_scales", DType: safetensors.U8, Shape: []int64{e, o, g}, Data: scales})
	}
	qd, kd := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim
	layerTypes := make([]string, s.Layers)
	for l := 0; l < s.Layers; l++ {
		layerTypes[l] = "full_attention"
		if l%2 == 0 {
			layerTypes[l] = "sliding_attention"
		}
		p := fmt.Sprintf("model.layers.%d.", l)
		vector(p+"input_layernorm.weight", s.Hidden, 1, 0)
		vector(p+"post_attention_layernorm.weight", s.Hidden, 1, 0)
		bf16(p+"self_attn.q_proj.weight", []int64{int64(qd), int64(s.Hidden)}, s.Hidden)
		bf16(p+"self_attn.k_proj.weight", []int64{int64(kd), int64(s.Hidden)}, s.Hidden)
		bf16(p+"self_attn.v_proj.weight", []int64{int64(kd), int64(s.Hidden)}, s.Hidden)
		bf16(p+"self_attn.o_proj.weight", []int64{int64(s.Hidden), int64(qd)}, qd)
		vector(p+"self_attn.q_proj.bias", qd, 0, 0.02)
		vector(p+"self_attn.k_proj.bias", kd, 0, 0.02)
		vector(p+"self_attn.v_proj.bias", kd, 0, 0.02)
		vector(p+"self_attn.o_proj.bias", s.Hidden, 0, 0.02)
		vector(p+"self_attn.sinks", s.Heads, 0, 1)
		bf16(p+"mlp.router.weight", []int64{int64(s.Experts), int64(s.Hidden)}, s.Hidden)
		vector(p+"mlp.router.bias", s.Experts, 0, 0.1)
		mxfp4(p+"mlp.experts.gate_up_proj", 2*s.Width, s.Hidden)
		mxfp4(p+"mlp.experts.down_proj", s.Hidden, s.Width)
		bf16(p+"mlp.experts.gate_up_proj_bias", []int64{int64(s.Experts), int64(2 * s.Width)}, 2500)
		bf16(p+"mlp.experts.down_proj_bias", []int64{int64(s.Experts), int64(s.Hidden)}, 2500)
		if err := c.Flush(synthetic.ShardName(l+1, s.Layers+1)); err != nil {
			return 0, err
		}
	}
	bf16("model.embed_tokens.weight", []int64{int64(s.Vocab), int64(s.Hidden)}, 1) // embeddings of std 1
	bf16("lm_head.weight", []int64{int64(s.Vocab), int64(s.Hidden)}, s.Hidden)
	vector("model.norm.weight", s.Hidden, 1, 0)
	if err := c.Flush(synthetic.ShardName(s.Layers+1, s.Layers+1)); err != nil {
		return 0, err
	}
	cfg := map[string]any{
		"architectures": []string{"GptOssForCausalLM"}, "model_type": "gpt_oss",
		"hidden_size": s.Hidden, "num_hidden_layers": s.Layers, "num_attention_heads": s.Heads,
		"num_key_value_heads": s.KVHeads, "head_dim": s.HeadDim, "vocab_size": s.Vocab,
		"num_local_experts": s.Experts, "num_experts_per_tok": s.TopK, "experts_per_token": s.TopK,
		"intermediate_size": s.Width, "sliding_window": s.Window, "layer_types": layerTypes,
		"rope_theta": 150000, "rope_scaling": map[string]any{"rope_type": "yarn", "factor": 32.0,
			"original_max_position_embeddings": 4096, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": false},
		"max_position_embeddings": 131072, "initial_context_length": 4096, "rms_norm_eps": 1e-5,
		"swiglu_limit": 7.0, "attention_bias": true, "tie_word_embeddings": false, "hidden_act": "silu",
		"quantization_config": map[string]any{"quant_method": "mxfp4",
			"modules_to_not_convert": []string{"model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"}},
	}
	return c.Finish(cfg)
}
