// Package streamtest writes synthetic qwen3_moe checkpoints for the expert
// streaming benchmark: the engine layout (one tensor per expert, MLX affine
// experts) at a chosen size, with routers built so that routing has the
// structure real MoE routing shows — skewed expert popularity, topics that
// persist over many tokens (temporal locality) and consecutive layers whose
// choices are correlated — when fed the token stream Tokens returns. The
// weights are otherwise random and the text meaningless; the I/O and
// compute they cause are what is measured.
package streamtest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/maniac-ai/mach/pkg/model/synthetic"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/safetensors"
)

// Shape is the model geometry; experts are MLX affine Bits/Group.
type Shape struct {
	Hidden, Layers          int
	Heads, KVHeads, HeadDim int
	Experts, TopK, Width    int
	Vocab                   int
	Bits, Group             int
}

// Routing shapes the routers.
type Routing struct {
	// Zipf is the popularity skew: expert of rank r gets a router bias of
	// -Zipf·ln(1+r).
	Zipf float64
	// Topics partition the vocabulary (token id mod Topics); each topic
	// prefers TopicExperts experts per layer with logit boost TopicBoost.
	Topics, TopicExperts int
	TopicBoost           float64
	// Noise is the token-level logit noise (standard deviation).
	Noise float64
	// TopicRun is the mean number of consecutive tokens of one topic in
	// Tokens.
	TopicRun int
}

// DefaultRouting is the routing the benchmark uses.
func DefaultRouting() Routing {
	return Routing{Zipf: 0.3, Topics: 16, TopicExperts: 16, TopicBoost: 1.5, Noise: 2.5, TopicRun: 48}
}

// ExpertBytes is one expert's stored size.
func (s Shape) ExpertBytes() int64 {
	per := func(out, in int) int64 {
		return int64(out)*int64(in)*int64(s.Bits)/8 + 2*2*int64(out)*int64(in/s.Group)
	}
	return 2*per(s.Width, s.Hidden) + per(s.Hidden, s.Width)
}

// Write writes config.json and one safetensors shard per layer (plus one
// for the embedding and head) with an index into dir.
func Write(dir string, s Shape, r Routing, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	c := synthetic.New(dir, map[string]string{"format": "mlx"})
	// affine adds a random MLX affine weight whose values have standard
	// deviation std.
	affine := func(name string, out, in int, std float64) {
		groups := in / s.Group
		codes := make([]byte, out*in*s.Bits/8)
		synthetic.Fill(rng, codes)
		levels := float64(int(1)<<s.Bits - 1)
		sc := std * math.Sqrt(12) / levels
		scales := make([]float32, out*groups)
		biases := make([]float32, out*groups)
		for i := range scales {
			scales[i] = float32(sc * (0.5 + rng.Float64()))
			biases[i] = -scales[i] * float32(levels) / 2
		}
		c.Add(
			safetensors.WriteTensor{Name: name + ".weight", DType: safetensors.U32, Shape: []int64{int64(out), int64(in * s.Bits / 32)}, Data: codes},
			safetensors.WriteTensor{Name: name + ".scales", DType: safetensors.BF16, Shape: []int64{int64(out), int64(groups)}, Data: quant.BF16Bytes(scales)},
			safetensors.WriteTensor{Name: name + ".biases", DType: safetensors.BF16, Shape: []int64{int64(out), int64(groups)}, Data: quant.BF16Bytes(biases)},
		)
	}
	plain := func(name string, shape []int64, v []float32) {
		c.Add(safetensors.WriteTensor{Name: name, DType: safetensors.BF16, Shape: shape, Data: quant.BF16Bytes(v)})
	}
	ones := func(name string, n int) { c.Add(synthetic.Const(name, n, 1)) }

	// Directions in the residual stream: dimension 0 carries a constant
	// (the popularity bias), topic k a random unit vector.
	topicVec := make([][]float32, r.Topics)
	for k := range topicVec {
		topicVec[k] = unit(rng, s.Hidden)
		topicVec[k][0] = 0
	}
	// Each topic's preferred experts in layer 0; layer l+1 prefers
	// perm[l] of layer l's, so consecutive layers' choices correlate.
	pref := make([][]int, r.Topics)
	for k := range pref {
		pref[k] = rng.Perm(s.Experts)[:r.TopicExperts]
	}
	rms := math.Sqrt(float64(s.Hidden)) // a normalized row has norm √H
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ones(p+"input_layernorm.weight", s.Hidden)
		ones(p+"post_attention_layernorm.weight", s.Hidden)
		ones(p+"self_attn.q_norm.weight", s.HeadDim)
		ones(p+"self_attn.k_norm.weight", s.HeadDim)
		// Attention and experts write little into the residual stream, so
		// the token's direction survives every layer.
		small := 0.001 / math.Sqrt(float64(s.Hidden))
		affine(p+"self_attn.q_proj", s.Heads*s.HeadDim, s.Hidden, 1/math.Sqrt(float64(s.Hidden)))
		affine(p+"self_attn.k_proj", s.KVHeads*s.HeadDim, s.Hidden, 1/math.Sqrt(float64(s.Hidden)))
		affine(p+"self_attn.v_proj", s.KVHeads*s.HeadDim, s.Hidden, 1/math.Sqrt(float64(s.Hidden)))
		affine(p+"self_attn.o_proj", s.Hidden, s.Heads*s.HeadDim, small)
		// Router: logit_e = bias_e + Σ_k boost·[e ∈ pref_k]·(topic k
		// component) + noise, through a·W with a the normalized row.
		rank := rng.Perm(s.Experts)
		router := make([]float32, s.Experts*s.Hidden)
		for e := 0; e < s.Experts; e++ {
			row := router[e*s.Hidden : (e+1)*s.Hidden]
			for i := range row {
				row[i] = float32(rng.NormFloat64() * r.Noise / rms)
			}
			// A normalized row's dimension 0 is √H·embDim0.
			row[0] = float32(-r.Zipf * math.Log1p(float64(rank[e])) / (rms * embDim0))
		}
		for k, es := range pref {
			for _, e := range es {
				row := router[e*s.Hidden : (e+1)*s.Hidden]
				// A normalized row's topic component is √H·embDim0·topicNorm.
				c := float32(r.TopicBoost / (rms * embDim0 * topicNorm))
				for i, v := range topicVec[k] {
					row[i] += c * v
				}
			}
			// The next layer's preferred experts: a fixed permutation.
			perm := rng.Perm(s.Experts)
			next := make([]int, len(es))
			for i, e := range es {
				next[i] = perm[e]
			}
			pref[k] = next
		}
		plain(p+"mlp.gate.weight", []int64{int64(s.Experts), int64(s.Hidden)}, router)
		for e := 0; e < s.Experts; e++ {
			q := fmt.Sprintf("%smlp.experts.%d.", p, e)
			affine(q+"gate_proj", s.Width, s.Hidden, 1/math.Sqrt(float64(s.Hidden)))
			affine(q+"up_proj", s.Width, s.Hidden, 1/math.Sqrt(float64(s.Hidden)))
			affine(q+"down_proj", s.Hidden, s.Width, 0.001/math.Sqrt(float64(s.Width)))
		}
		if err := c.Flush(synthetic.ShardName(l+1, s.Layers+1)); err != nil {
			return err
		}
	}
	// Embedding: dimension 0 fixed, the token's topic direction, noise.
	emb := make([]float32, s.Vocab*s.Hidden)
	for t := 0; t < s.Vocab; t++ {
		row := emb[t*s.Hidden : (t+1)*s.Hidden]
		tv := topicVec[t%r.Topics]
		for i := range row {
			row[i] = float32(rng.NormFloat64()*embNoise/math.Sqrt(float64(s.Hidden))) + float32(topicNorm)*tv[i]
		}
		row[0] = 1
	}
	plain("model.embed_tokens.weight", []int64{int64(s.Vocab), int64(s.Hidden)}, emb)
	affine("lm_head", s.Vocab, s.Hidden, 1/math.Sqrt(float64(s.Hidden)))
	ones("model.norm.weight", s.Hidden)
	if err := c.Flush(synthetic.ShardName(s.Layers+1, s.Layers+1)); err != nil {
		return err
	}
	q := map[string]any{"group_size": s.Group, "bits": s.Bits, "mode": "affine"}
	cfg := map[string]any{
		"architectures": []string{"Qwen3MoeForCausalLM"}, "model_type": "qwen3_moe",
		"hidden_size": s.Hidden, "num_hidden_layers": s.Layers, "num_attention_heads": s.Heads,
		"num_key_value_heads": s.KVHeads, "head_dim": s.HeadDim, "vocab_size": s.Vocab,
		"num_experts": s.Experts, "num_experts_per_tok": s.TopK, "moe_intermediate_size": s.Width,
		"intermediate_size": 4 * s.Hidden, "decoder_sparse_step": 1, "mlp_only_layers": []int{}, "norm_topk_prob": true,
		"rms_norm_eps": 1e-6, "rope_theta": 1e6, "max_position_embeddings": 32768, "tie_word_embeddings": false,
		"attention_bias": false, "hidden_act": "silu", "dtype": "bfloat16",
		"quantization": q, "quantization_config": q,
	}
	_, err := c.Finish(cfg)
	return err
}

// The embedding's topic component has norm topicNorm and its noise
// embNoise; with dimension 0 at 1 a row's norm is about
// √(1 + topicNorm² + embNoise²), which normalization maps to √H.
const (
	topicNorm = 1.0
	embNoise  = 1.0
)

// embDim0 is 1/|row| of an embedding row: normalization multiplies the
// row by √H·embDim0.
var embDim0 = 1 / math.Sqrt(1+topicNorm*topicNorm+embNoise*embNoise)

// Tokens returns a token stream of n tokens whose topic (token id mod
// Topics) changes after runs of about TopicRun tokens.
func Tokens(s Shape, r Routing, n int, seed uint64) []int32 {
	rng := rand.New(rand.NewPCG(seed, 0x70c))
	out := make([]int32, n)
	topic := rng.IntN(r.Topics)
	per := s.Vocab / r.Topics
	for i := range out {
		if rng.IntN(r.TopicRun) == 0 {
			topic = rng.IntN(r.Topics)
		}
		out[i] = int32(topic + r.Topics*rng.IntN(per))
	}
	return out
}

func unit(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	var ss float64
	for i := range v {
		x := rng.NormFloat64()
		v[i] = float32(x)
		ss += x * x
	}
	inv := float32(1 / math.Sqrt(ss))
	for i := range v {
		v[i] *= inv
	}
	return v
}
