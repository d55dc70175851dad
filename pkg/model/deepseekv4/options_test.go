package deepseekv4_test

import (
	"encoding/json"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/model/deepseekv4"
	"github.com/maniac-ai/mach/pkg/model/rope"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/stretchr/testify/require"
)

// upstream is DeepSeek-V4-Flash's config.json (the hub file's keys and
// values), which the options must read as they are.
const upstream = `{
  "architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4",
  "vocab_size": 129280, "hidden_size": 4096, "moe_intermediate_size": 2048, "num_hidden_layers": 43,
  "num_attention_heads": 64, "num_key_value_heads": 1, "head_dim": 512, "qk_rope_head_dim": 64,
  "q_lora_rank": 1024, "o_groups": 8, "o_lora_rank": 1024, "sliding_window": 128,
  "compress_ratios": [0, 0, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 0],
  "compress_rope_theta": 160000, "rope_theta": 10000,
  "rope_scaling": {"type": "yarn", "factor": 16, "original_max_position_embeddings": 65536, "beta_fast": 32, "beta_slow": 1},
  "index_n_heads": 64, "index_head_dim": 128, "index_topk": 512, "num_hash_layers": 3,
  "hc_mult": 4, "hc_eps": 1e-6, "hc_sinkhorn_iters": 20, "n_routed_experts": 256, "n_shared_experts": 1,
  "num_experts_per_tok": 6, "routed_scaling_factor": 1.5, "scoring_func": "sqrtsoftplus", "topk_method": "noaux_tc",
  "norm_topk_prob": true, "swiglu_limit": 10.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 1048576,
  "tie_word_embeddings": false, "num_nextn_predict_layers": 1,
  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "scale_fmt": "ue8m0", "weight_block_size": [128, 128]}
}`

func parse(t *testing.T, raw string, edit func(map[string]any)) (deepseekv4.Options, error) {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(raw), &m))
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	cfg, err := modelconfig.Parse(b)
	require.NoError(t, err)
	return deepseekv4.ParseOptions(cfg)
}

func TestUpstreamConfig(t *testing.T) {
	o, err := parse(t, upstream, nil)
	require.NoError(t, err)
	require.Equal(t, 43, len(o.Kinds))
	require.Equal(t, deepseekv4.Sliding, o.Kinds[0])
	require.Equal(t, deepseekv4.CSA, o.Kinds[2])
	require.Equal(t, deepseekv4.HCA, o.Kinds[3])
	require.Equal(t, 128, o.Ratios[3])
	require.Equal(t, deepseekv4.CSA, o.Kinds[42], "the 44th entry is the MTP layer's")
	require.Equal(t, []bool{true, true, true, false}, o.Hash[:4])
	require.Equal(t, 64, o.RopeDim)
	require.Equal(t, [2]int{128, 128}, o.FP8Block)
	require.Equal(t, kernels.Activation{Kind: kernels.SiLULimited, Alpha: 1, Limit: 10}, o.Act)
	require.Equal(t, float32(1.5), o.RouteScale)
	require.Equal(t, 448, o.MainRoPE.Offset, "RoPE on the trailing 64 of 512 dims")
	require.True(t, o.MainRoPE.Interleaved)
	// Main: plain theta 10000; compress: theta 160000 with YaRN (factor 16
	// from 65536) and attention factor 1.
	want, _, err := rope.Params{Type: "default", Theta: 10000, Dims: 64}.InvFreq()
	require.NoError(t, err)
	require.Equal(t, want, o.MainRoPE.InvFreq)
	yarn, _, err := rope.Params{Type: "yarn", Theta: 160000, Dims: 64, Factor: 16, OriginalMax: 65536, Truncate: true, AttentionFactor: 1}.InvFreq()
	require.NoError(t, err)
	require.Equal(t, yarn, o.CompressRoPE.InvFreq)
	require.Equal(t, float32(1), o.CompressRoPE.Scale)
	require.Equal(t, 128, o.IndexRoPE.HeadDim)
	require.Equal(t, 64, o.IndexRoPE.Offset)
	layers := o.CacheLayers()
	require.True(t, layers[2].Overlap)
	require.Equal(t, 128, layers[2].IndexDim)
	require.Zero(t, layers[3].IndexDim)
}

// transformers 5.x writes the same model with layer_types, compress_rates,
// mlp_layer_types and nested rope_parameters; both spellings agree.
func TestTransformersConfigAgrees(t *testing.T) {
	want, err := parse(t, upstream, nil)
	require.NoError(t, err)
	got, err := parse(t, upstream, func(m map[string]any) {
		ratios := m["compress_ratios"].([]any)
		types := make([]string, 43)
		for i := range types {
			switch ratios[i].(float64) {
			case 0:
				types[i] = "sliding_attention"
			case 4:
				types[i] = "compressed_sparse_attention"
			default:
				types[i] = "heavily_compressed_attention"
			}
		}
		mlp := make([]string, 43)
		for i := range mlp {
			mlp[i] = "moe"
			if i < 3 {
				mlp[i] = "hash_moe"
			}
		}
		for _, k := range []string{"compress_ratios", "num_hash_layers", "rope_scaling", "qk_rope_head_dim", "rope_theta", "compress_rope_theta"} {
			delete(m, k)
		}
		m["layer_types"], m["mlp_layer_types"] = types, mlp
		m["compress_rates"] = map[string]int{"compressed_sparse_attention": 4, "heavily_compressed_attention": 128}
		m["partial_rotary_factor"] = 0.125
		m["rope_parameters"] = map[string]any{
			"main":     map[string]any{"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.125},
			"compress": map[string]any{"rope_type": "yarn", "rope_theta": 160000.0, "factor": 16.0, "original_max_position_embeddings": 65536, "beta_fast": 32, "beta_slow": 1, "attention_factor": 1.0, "partial_rotary_factor": 0.125},
		}
	})
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func TestConfigRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"no attention schedule", func(m map[string]any) { delete(m, "compress_ratios") }, "neither layer_types nor compress_ratios"},
		{"no hash schedule", func(m map[string]any) { delete(m, "num_hash_layers") }, "neither mlp_layer_types nor num_hash_layers"},
		{"no swiglu_limit", func(m map[string]any) { delete(m, "swiglu_limit") }, "no swiglu_limit"},
		{"no routed_scaling_factor", func(m map[string]any) { delete(m, "routed_scaling_factor") }, "no routed_scaling_factor"},
		{"softmax scores", func(m map[string]any) { m["scoring_func"] = "softmax" }, `scoring_func "softmax"`},
		{"unnormalized top-k", func(m map[string]any) { m["norm_topk_prob"] = false }, "norm_topk_prob false"},
		{"several kv heads", func(m map[string]any) { m["num_key_value_heads"] = 8 }, "one shared K=V head"},
		{"several shared experts", func(m map[string]any) { m["n_shared_experts"] = 2 }, "one shared expert"},
		{"bad layer type", func(m map[string]any) {
			delete(m, "compress_ratios")
			types := make([]string, 43)
			for i := range types {
				types[i] = "full_attention"
			}
			m["layer_types"] = types
		}, `layer_types[0] is "full_attention"`},
		{"CSA without an indexer", func(m map[string]any) { delete(m, "index_topk") }, "index_topk 0"},
		{"rope type", func(m map[string]any) { m["rope_scaling"] = map[string]any{"type": "longrope"} }, `rope type "longrope"`},
		{"rotary dims", func(m map[string]any) { m["qk_rope_head_dim"] = 7 }, "7 rotary dims"},
		{"block size", func(m map[string]any) {
			m["quantization_config"] = map[string]any{"quant_method": "fp8", "weight_block_size": []int{128}}
		}, "weight_block_size"},
		{"tied head", func(m map[string]any) { m["tie_word_embeddings"] = true }, "tie_word_embeddings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, upstream, tc.edit)
			require.ErrorIs(t, err, fault.ErrUnsupported)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
