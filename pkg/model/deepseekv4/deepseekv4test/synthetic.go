// Package deepseekv4test writes synthetic deepseek_v4 checkpoints in
// DeepSeek's upstream form (hub names, config.json with compress_ratios,
// num_hash_layers, rope_scaling and qk_rope_head_dim): FP8 e4m3 attention
// and shared experts with 128×128 tile scales and FP4 routed experts as
// DeepSeek ships them, or the same weights dequantized into f32, or with
// the experts stacked as MLX conversions keep them. Random weights drawn
// so every path of the forward pass matters (perturbed norms, decisive
// routers, hash tables, sinks, YaRN on the compressed layers). Tests and
// benchmarks use them; their logits mean nothing.
package deepseekv4test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/safetensors"
)

// Format is how a synthetic checkpoint stores its quantizable weights.
type Format int

// Formats.
const (
	// FP8: DeepSeek's hub form — FP8 e4m3 attention, indexer query and
	// shared experts with e8m0 128×128 tile scales, FP4 e2m1 routed
	// experts (I8 pairs, e8m0 per 32), bf16 embeddings, head, norms,
	// compressors and routers.
	FP8 Format = iota
	// F32: the FP8 form's values dequantized, every tensor f32.
	F32
)

// Shape is a deepseek_v4 geometry.
type Shape struct {
	Hidden, Layers, Vocab          int
	Heads, HeadDim, RopeDim, QLora int
	OGroups, OLora, Window         int
	// Ratios holds each layer's compress_ratios entry: 0 sliding, 4 CSA,
	// anything else HCA.
	Ratios                          []int
	IndexHeads, IndexDim, IndexTopK int
	HCMult                          int
	Experts, TopK, Width            int
	HashLayers                      int
	// YaRN on the compressed layers (factor, original context); 0: none.
	YaRNFactor float64
	YaRNOrig   int
	MaxPos     int
}

// Tiny is a small geometry with every feature on: an HCA, a CSA, a
// sliding-only and a second CSA layer, one hash layer, window 8, YaRN.
// The indexer has 8 heads, which makes exact ties between its scores (a
// choice the reference leaves to PyTorch's topk) practically impossible.
func Tiny() Shape {
	return Shape{Hidden: 128, Layers: 4, Vocab: 160, Heads: 4, HeadDim: 32, RopeDim: 8, QLora: 64,
		OGroups: 2, OLora: 32, Window: 8, Ratios: []int{8, 4, 0, 4},
		IndexHeads: 8, IndexDim: 16, IndexTopK: 4, HCMult: 4,
		Experts: 8, TopK: 2, Width: 64, HashLayers: 1, YaRNFactor: 4, YaRNOrig: 64, MaxPos: 4096}
}

// Flash is DeepSeek-V4-Flash's per-layer geometry with layers layers
// (compress_ratios as the release: 0, 0, then 4 and 128 alternating) and
// the full vocabulary.
func Flash(layers int) Shape {
	r := make([]int, layers)
	for i := range r {
		switch {
		case i < 2:
		case i%2 == 0:
			r[i] = 4
		default:
			r[i] = 128
		}
	}
	return Shape{Hidden: 4096, Layers: layers, Vocab: 129280, Heads: 64, HeadDim: 512, RopeDim: 64, QLora: 1024,
		OGroups: 8, OLora: 1024, Window: 128, Ratios: r, IndexHeads: 64, IndexDim: 128, IndexTopK: 512, HCMult: 4,
		Experts: 256, TopK: 6, Width: 2048, HashLayers: min(3, layers), YaRNFactor: 16, YaRNOrig: 65536, MaxPos: 1 << 20}
}

// Options choose the storage.
type Options struct {
	Format Format
	// Stacked writes each projection's routed experts as one [E, out,
	// in] tensor (ffn.experts.w1.weight …, f32: the F32 form's values), as
	// DeepSeek's MLX conversions do — a layout mach must refuse; mach-prune
	// slices it into the F32 form.
	Stacked bool
	Seed    uint64
}

type writer struct {
	s      Shape
	o      Options
	rng    *rand.Rand
	shard  []safetensors.WriteTensor
	index  map[string]string
	shards int
	dir    string
}

// Write writes config.json and the weights (one shard per layer plus one
// for the embedding, head and final norm, with an index) into dir.
func Write(dir string, s Shape, o Options) error {
	w := &writer{s: s, o: o, rng: rand.New(rand.NewPCG(o.Seed, 0x44534b34)), index: map[string]string{}, dir: dir}
	for l := 0; l < s.Layers; l++ {
		w.layer(l)
		if err := w.flush(); err != nil {
			return err
		}
	}
	w.matrix("embed", s.Vocab, s.Hidden, "bf16", 1)
	w.matrix("head", s.Vocab, s.Hidden, "bf16", 1)
	w.vector("norm.weight", s.Hidden, "bf16", 1, 0.1)
	w.matrix("hc_head_fn", s.HCMult, s.HCMult*s.Hidden, "f32", 1)
	w.vector("hc_head_base", s.HCMult, "f32", 0, 0.1)
	w.vector("hc_head_scale", 1, "f32", 1, 0.1)
	if err := w.flush(); err != nil {
		return err
	}
	idx, err := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": w.index})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, safetensors.IndexName), idx, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), s.config(o.Format), 0o644)
}

func (s Shape) config(f Format) []byte {
	ratios := append(append([]int(nil), s.Ratios...), 0) // + the MTP layer
	c := map[string]any{
		"architectures": []string{"DeepseekV4ForCausalLM"}, "model_type": "deepseek_v4",
		"vocab_size": s.Vocab, "hidden_size": s.Hidden, "num_hidden_layers": s.Layers,
		"num_attention_heads": s.Heads, "num_key_value_heads": 1, "head_dim": s.HeadDim,
		"qk_rope_head_dim": s.RopeDim, "q_lora_rank": s.QLora, "o_groups": s.OGroups, "o_lora_rank": s.OLora,
		"sliding_window": s.Window, "compress_ratios": ratios, "compress_rope_theta": 160000.0, "rope_theta": 10000.0,
		"index_n_heads": s.IndexHeads, "index_head_dim": s.IndexDim, "index_topk": s.IndexTopK,
		"hc_mult": s.HCMult, "hc_sinkhorn_iters": 20, "hc_eps": 1e-6,
		"n_routed_experts": s.Experts, "n_shared_experts": 1, "num_experts_per_tok": s.TopK,
		"moe_intermediate_size": s.Width, "num_hash_layers": s.HashLayers,
		"scoring_func": "sqrtsoftplus", "topk_method": "noaux_tc", "norm_topk_prob": true,
		"routed_scaling_factor": 1.5, "swiglu_limit": 10.0, "rms_norm_eps": 1e-6,
		"max_position_embeddings": s.MaxPos, "tie_word_embeddings": false, "num_nextn_predict_layers": 1,
		"hidden_act": "silu", "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "bfloat16",
	}
	if s.YaRNFactor > 0 {
		c["rope_scaling"] = map[string]any{"type": "yarn", "factor": s.YaRNFactor, "original_max_position_embeddings": s.YaRNOrig,
			"beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}
	}
	if f == FP8 {
		c["quantization_config"] = map[string]any{"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
			"scale_fmt": "ue8m0", "weight_block_size": []int{128, 128}}
		c["expert_dtype"] = "fp4"
	} else {
		c["torch_dtype"] = "float32"
	}
	out, _ := json.MarshalIndent(c, "", "  ")
	return out
}

func (w *writer) layer(l int) {
	s := w.s
	p := fmt.Sprintf("layers.%d.", l)
	w.vector(p+"attn_norm.weight", s.Hidden, "bf16", 1, 0.1)
	w.vector(p+"ffn_norm.weight", s.Hidden, "bf16", 1, 0.1)
	mix := (2 + s.HCMult) * s.HCMult
	for _, site := range []string{"attn", "ffn"} {
		w.matrix(p+"hc_"+site+"_fn", mix, s.HCMult*s.Hidden, "f32", 1)
		w.vector(p+"hc_"+site+"_base", mix, "f32", 0, 0.3)
		w.vector(p+"hc_"+site+"_scale", 3, "f32", 1, 0.1)
	}
	a := p + "attn."
	w.matrix(a+"wq_a", s.QLora, s.Hidden, "fp8", 1)
	w.vector(a+"q_norm.weight", s.QLora, "bf16", 1, 0.1)
	w.matrix(a+"wq_b", s.Heads*s.HeadDim, s.QLora, "fp8", 1)
	w.matrix(a+"wkv", s.HeadDim, s.Hidden, "fp8", 1)
	w.vector(a+"kv_norm.weight", s.HeadDim, "bf16", 1, 0.1)
	w.matrix(a+"wo_a", s.OGroups*s.OLora, s.Heads*s.HeadDim/s.OGroups, "fp8", 1)
	w.matrix(a+"wo_b", s.Hidden, s.OGroups*s.OLora, "fp8", 1)
	w.vector(a+"attn_sink", s.Heads, "f32", 0, 0.5)
	if r := s.Ratios[l]; r > 0 {
		coff := 1
		if r == 4 {
			coff = 2
		}
		w.compressor(a+"compressor.", s.HeadDim, coff, r)
		if r == 4 {
			w.compressor(a+"indexer.compressor.", s.IndexDim, 2, r)
			w.matrix(a+"indexer.wq_b", s.IndexHeads*s.IndexDim, s.QLora, "fp8", 1)
			w.matrix(a+"indexer.weights_proj", s.IndexHeads, s.Hidden, "bf16", 1)
		}
	}
	f := p + "ffn."
	w.matrix(f+"gate", s.Experts, s.Hidden, "bf16", 4)
	if l < s.HashLayers {
		ids := make([]byte, 8*s.Vocab*s.TopK)
		for t := 0; t < s.Vocab; t++ {
			for k, e := range w.rng.Perm(s.Experts)[:s.TopK] {
				binary.LittleEndian.PutUint64(ids[8*(t*s.TopK+k):], uint64(e))
			}
		}
		w.shard = append(w.shard, safetensors.WriteTensor{Name: f + "gate.tid2eid", DType: safetensors.I64,
			Shape: []int64{int64(s.Vocab), int64(s.TopK)}, Data: ids})
	} else {
		w.vector(f+"gate.bias", s.Experts, "f32", 0, 0.1)
	}
	for _, x := range []struct {
		name    string
		out, in int
	}{{"w1", s.Width, s.Hidden}, {"w3", s.Width, s.Hidden}, {"w2", s.Hidden, s.Width}} {
		w.matrix(f+"shared_experts."+x.name, x.out, x.in, "fp8", 1)
		if w.o.Stacked {
			// The values the per-expert F32 form stores (FP4, dequantized),
			// stacked: slicing gives that form back.
			var vals []float32
			for e := 0; e < s.Experts; e++ {
				m, err := quant.QuantizeMXFP4(w.randn(x.out*x.in, 1/math.Sqrt(float64(x.in))), x.out, x.in)
				if err != nil {
					panic(err)
				}
				vals = append(vals, m.Dequantize()...)
			}
			w.shard = append(w.shard, safetensors.WriteTensor{Name: f + "experts." + x.name + ".weight", DType: safetensors.F32,
				Shape: []int64{int64(s.Experts), int64(x.out), int64(x.in)}, Data: quant.F32Bytes(vals)})
			continue
		}
		for e := 0; e < s.Experts; e++ {
			w.matrix(fmt.Sprintf("%sexperts.%d.%s", f, e, x.name), x.out, x.in, "fp4", 1)
		}
	}
}

func (w *writer) compressor(p string, d, coff, ratio int) {
	w.matrix(p+"wkv", coff*d, w.s.Hidden, "bf16", 1)
	w.matrix(p+"wgate", coff*d, w.s.Hidden, "bf16", 1)
	w.vector(p+"norm.weight", d, "bf16", 1, 0.1)
	vals := w.randn(ratio*coff*d, 0.5)
	w.shard = append(w.shard, safetensors.WriteTensor{Name: p + "ape", DType: safetensors.F32,
		Shape: []int64{int64(ratio), int64(coff * d)}, Data: quant.F32Bytes(vals)})
}

func (w *writer) randn(n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(w.rng.NormFloat64() * std)
	}
	return v
}

// matrix writes an [out, in] weight drawn from N(0, gain²/in) as kind says
// (fp8, fp4, bf16, f32), or its dequantized f32 values in the F32 format.
func (w *writer) matrix(name string, out, in int, kind string, gain float64) {
	vals := w.randn(out*in, gain/math.Sqrt(float64(in)))
	shape := []int64{int64(out), int64(in)}
	switch kind {
	case "fp8":
		codes, scales, err := quant.QuantizeFP8Blocks(vals, out, in, 128, 128)
		if err != nil {
			panic(err) // shapes are ours
		}
		if w.o.Format == FP8 {
			w.shard = append(w.shard,
				safetensors.WriteTensor{Name: name + ".weight", DType: safetensors.F8E4M3, Shape: shape, Data: codes},
				safetensors.WriteTensor{Name: name + ".scale", DType: safetensors.F8E8M0,
					Shape: []int64{int64((out + 127) / 128), int64((in + 127) / 128)}, Data: scales})
			return
		}
		m, err := quant.FromBlockScaled(codes, out, in, scales, quant.ScaleE8M0, 128, 128)
		if err != nil {
			panic(err)
		}
		vals = m.Dequantize()
	case "fp4":
		m, err := quant.QuantizeMXFP4(vals, out, in)
		if err != nil {
			panic(err)
		}
		if w.o.Format == FP8 {
			w.shard = append(w.shard,
				safetensors.WriteTensor{Name: name + ".weight", DType: safetensors.I8, Shape: []int64{int64(out), int64(in / 2)}, Data: m.Data},
				safetensors.WriteTensor{Name: name + ".scale", DType: safetensors.F8E8M0, Shape: []int64{int64(out), int64(in / 32)}, Data: m.Scales})
			return
		}
		vals = m.Dequantize()
	case "bf16":
		if w.o.Format == FP8 {
			w.shard = append(w.shard, safetensors.WriteTensor{Name: name + ".weight", DType: safetensors.BF16, Shape: shape, Data: quant.BF16Bytes(vals)})
			return
		}
		vals = roundBF16(vals)
	}
	if kind == "f32" && w.o.Format == FP8 {
		// hc fns keep no .weight suffix, as DeepSeek names them.
		w.shard = append(w.shard, safetensors.WriteTensor{Name: name, DType: safetensors.F32, Shape: shape, Data: quant.F32Bytes(vals)})
		return
	}
	n := name + ".weight"
	if kind == "f32" {
		n = name
	}
	w.shard = append(w.shard, safetensors.WriteTensor{Name: n, DType: safetensors.F32, Shape: shape, Data: quant.F32Bytes(vals)})
}

// vector writes an n-vector center + N(0, std²).
func (w *writer) vector(name string, n int, kind string, center, std float64) {
	vals := w.randn(n, std)
	for i := range vals {
		vals[i] += float32(center)
	}
	if kind == "bf16" {
		if w.o.Format == FP8 {
			w.shard = append(w.shard, safetensors.WriteTensor{Name: name, DType: safetensors.BF16, Shape: []int64{int64(n)}, Data: quant.BF16Bytes(vals)})
			return
		}
		vals = roundBF16(vals)
	}
	w.shard = append(w.shard, safetensors.WriteTensor{Name: name, DType: safetensors.F32, Shape: []int64{int64(n)}, Data: quant.F32Bytes(vals)})
}

func (w *writer) flush() error {
	w.shards++
	name := fmt.Sprintf("model-%05d.safetensors", w.shards)
	for _, t := range w.shard {
		w.index[t.Name] = name
	}
	f, err := os.Create(filepath.Join(w.dir, name))
	if err != nil {
		return err
	}
	err = safetensors.Write(f, w.shard, map[string]string{"format": "pt"})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	w.shard = nil
	return err
}

func roundBF16(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = quant.BF16ToF32(quant.F32ToBF16(x))
	}
	return out
}
