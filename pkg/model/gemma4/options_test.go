package gemma4_test

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/archconfig"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/model/gemma4"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/stretchr/testify/require"
)

// hubText is a text_config in the form of google/gemma-4-26B-A4B's
// config.json (architecture notes §4.1): global_head_dim and
// num_global_key_value_heads rather than transformers 5.17's serialized
// per_layer_config, 30 layers of five sliding then one full.
func hubText() map[string]any {
	types := make([]string, 30)
	for i := range types {
		types[i] = "sliding_attention"
		if (i+1)%6 == 0 {
			types[i] = "full_attention"
		}
	}
	return map[string]any{
		"model_type": "gemma4_text", "hidden_size": 2816, "num_hidden_layers": 30, "layer_types": types,
		"num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256,
		"num_global_key_value_heads": 2, "global_head_dim": 512, "attention_k_eq_v": true,
		"sliding_window": 1024, "intermediate_size": 2112, "enable_moe_block": true,
		"num_experts": 128, "top_k_experts": 8, "moe_intermediate_size": 704,
		"hidden_activation": "gelu_pytorch_tanh", "final_logit_softcapping": 30.0, "rms_norm_eps": 1e-6,
		"rope_parameters": map[string]any{
			"sliding_attention": map[string]any{"rope_type": "default", "rope_theta": 10000.0},
			"full_attention":    map[string]any{"rope_type": "proportional", "rope_theta": 1e6, "partial_rotary_factor": 0.25},
		},
		"max_position_embeddings": 262144, "vocab_size": 262144, "tie_word_embeddings": true,
		"hidden_size_per_layer_input": 0, "num_kv_shared_layers": 0, "use_double_wide_mlp": false,
	}
}

func parse(t *testing.T, text map[string]any) (gemma4.Options, error) {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"model_type": "gemma4", "text_config": text, "tie_word_embeddings": true})
	require.NoError(t, err)
	cfg, err := modelconfig.Parse(raw)
	require.NoError(t, err)
	return gemma4.ParseOptions(cfg)
}

func TestParseOptionsHubConfig(t *testing.T) {
	o, err := parse(t, hubText())
	require.NoError(t, err)
	require.Equal(t, 30, len(o.Layer))
	require.Equal(t, float32(30), o.Softcap)
	require.Equal(t, 2816, o.Hidden)
	require.Equal(t, 30, o.Slots())
	s, f := o.Layer[0], o.Layer[5]
	require.Equal(t, archconfig.Gemma4Layer{Kind: gemma4.Sliding, Heads: 16, KVHeads: 8, HeadDim: 256, Window: 1024, SharesKV: -1, Slot: 0, Intermediate: 2112, RoPE: s.Gemma4Layer.RoPE}, s.Gemma4Layer)
	require.Equal(t, archconfig.Gemma4Layer{Kind: gemma4.Full, Heads: 16, KVHeads: 2, HeadDim: 512, KEqV: true, SharesKV: -1, Slot: 5, Intermediate: 2112, RoPE: f.Gemma4Layer.RoPE}, f.Gemma4Layer)
	require.Equal(t, kernels.RoPE(s.Gemma4Layer.RoPE), s.RoPE, "the kernels' RoPE is archconfig's, converted")
	require.Equal(t, gemma4.Full, o.Layer[29].Kind)

	// Sliding layers: default RoPE over the whole 256-dim head, theta 1e4.
	require.Equal(t, 256, s.RoPE.Dims)
	require.Len(t, s.RoPE.InvFreq, 128)
	require.InDelta(t, 1/math.Pow(1e4, 2.0*127/256), s.RoPE.InvFreq[127], 1e-9)
	// Full layers: proportional — pairs (i, i+256) over the whole 512-dim
	// head, only the first int(0.25·512/2) = 64 with a frequency
	// 1/1e6^(2i/512), the rest standing still.
	require.Equal(t, 512, f.RoPE.Dims)
	require.Len(t, f.RoPE.InvFreq, 256)
	for i, v := range f.RoPE.InvFreq {
		if i < 64 {
			require.InEpsilon(t, 1/math.Pow(1e6, 2*float64(i)/512), v, 1e-6, "frequency %d", i)
		} else {
			require.Zero(t, v, "frequency %d", i)
		}
	}
}

// transformers 5.17 serializes per_layer_config (as the fixtures have it);
// it then ignores global_head_dim and num_global_key_value_heads.
func TestParseOptionsPerLayerConfig(t *testing.T) {
	x := hubText()
	x["num_hidden_layers"], x["layer_types"] = 4, []string{"sliding_attention", "full_attention", "sliding_attention", "full_attention"}
	x["per_layer_config"] = map[string]any{"1": map[string]any{"head_dim": 32}, "3": map[string]any{"head_dim": 32, "num_key_value_heads": 1}}
	o, err := parse(t, x)
	require.NoError(t, err)
	require.Equal(t, []int{256, 32, 256, 32}, []int{o.Layer[0].HeadDim, o.Layer[1].HeadDim, o.Layer[2].HeadDim, o.Layer[3].HeadDim})
	require.Equal(t, []int{8, 8, 8, 1}, []int{o.Layer[0].KVHeads, o.Layer[1].KVHeads, o.Layer[2].KVHeads, o.Layer[3].KVHeads})
	require.Len(t, o.Layer[1].RoPE.InvFreq, 16)
	// Proportional angles of a 32-dim head: int(0.25·32/2) = 4.
	require.NotZero(t, o.Layer[1].RoPE.InvFreq[3])
	require.Zero(t, o.Layer[1].RoPE.InvFreq[4])
}

func TestParseOptionsKVSharing(t *testing.T) {
	x := hubText()
	x["num_hidden_layers"] = 6
	x["layer_types"] = []string{"sliding_attention", "full_attention", "sliding_attention", "sliding_attention", "full_attention", "sliding_attention"}
	x["num_kv_shared_layers"] = 3
	x["use_double_wide_mlp"] = true
	o, err := parse(t, x)
	require.NoError(t, err)
	// first shared layer = 6 - 3 = 3; the last layer is forced to full.
	var shares, slots, inter []int
	for _, l := range o.Layer {
		shares, slots, inter = append(shares, l.SharesKV), append(slots, l.Slot), append(inter, l.Intermediate)
	}
	require.Equal(t, []int{-1, -1, -1, 2, 1, 1}, shares)
	require.Equal(t, []int{0, 1, 2, -1, -1, -1}, slots)
	require.Equal(t, []int{2112, 2112, 2112, 4224, 4224, 4224}, inter)
	require.Equal(t, 3, o.Slots())
	require.Equal(t, gemma4.Full, o.Layer[5].Kind)
}

// Absent keys take transformers' defaults (Gemma4TextConfig), which differ
// from null or zero for some of them.
func TestParseOptionsDefaults(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(map[string]any)
		check func(*testing.T, gemma4.Options)
	}{
		{"per-layer inputs absent", func(x map[string]any) { delete(x, "hidden_size_per_layer_input") }, func(t *testing.T, o gemma4.Options) {
			require.Equal(t, 256, o.PerLayerInput)
			require.Equal(t, 262144, o.PerLayerVocab)
		}},
		{"per-layer inputs null", func(x map[string]any) { x["hidden_size_per_layer_input"] = nil }, func(t *testing.T, o gemma4.Options) {
			require.Zero(t, o.PerLayerInput)
		}},
		{"window absent", func(x map[string]any) { delete(x, "sliding_window") }, func(t *testing.T, o gemma4.Options) {
			require.Equal(t, 512, o.Layer[0].Window)
		}},
		{"head dim absent", func(x map[string]any) { delete(x, "head_dim") }, func(t *testing.T, o gemma4.Options) {
			require.Equal(t, 256, o.Layer[0].HeadDim)
		}},
		{"tied absent", func(x map[string]any) { delete(x, "tie_word_embeddings") }, func(t *testing.T, o gemma4.Options) {
			require.True(t, o.TiedEmbeddings)
		}},
		{"untied", func(x map[string]any) { x["tie_word_embeddings"] = false }, func(t *testing.T, o gemma4.Options) {
			require.False(t, o.TiedEmbeddings)
		}},
		{"no rope_parameters", func(x map[string]any) { delete(x, "rope_parameters") }, func(t *testing.T, o gemma4.Options) {
			require.Equal(t, 256, o.Layer[0].RoPE.Dims)
			require.NotZero(t, o.Layer[5].RoPE.InvFreq[63])
			require.Zero(t, o.Layer[5].RoPE.InvFreq[64])
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := hubText()
			tt.edit(x)
			raw, err := json.Marshal(map[string]any{"model_type": "gemma4", "text_config": x})
			require.NoError(t, err)
			cfg, err := modelconfig.Parse(raw)
			require.NoError(t, err)
			o, err := gemma4.ParseOptions(cfg)
			require.NoError(t, err)
			tt.check(t, o)
		})
	}
}

func TestParseOptionsRefusals(t *testing.T) {
	tests := []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"dense", func(x map[string]any) { x["enable_moe_block"] = false }, "enable_moe_block is not true"},
		{"dense by default", func(x map[string]any) { delete(x, "enable_moe_block") }, "transformers' default is false"},
		{"activation", func(x map[string]any) { x["hidden_activation"] = "silu" }, `hidden_activation "silu"`},
		{"bias", func(x map[string]any) { x["attention_bias"] = true }, "attention_bias"},
		{"bidirectional", func(x map[string]any) { x["use_bidirectional_attention"] = "all" }, "use_bidirectional_attention"},
		{"all shared", func(x map[string]any) { x["num_kv_shared_layers"] = 30 }, "num_kv_shared_layers 30"},
		{"no source", func(x map[string]any) {
			x["num_hidden_layers"], x["layer_types"], x["num_kv_shared_layers"] = 3, []string{"sliding_attention", "sliding_attention", "full_attention"}, 1
		}, "no earlier layer of its kind"},
		{"rope", func(x map[string]any) {
			x["rope_parameters"].(map[string]any)["full_attention"] = map[string]any{"rope_type": "yarn", "rope_theta": 1e6, "factor": 8}
		}, `rope_type "yarn"`},
		{"no window", func(x map[string]any) { x["sliding_window"] = 0 }, "sliding_window is 0"},
		{"override", func(x map[string]any) {
			x["per_layer_config"] = map[string]any{"2": map[string]any{"intermediate_size": 9}}
		}, `overrides "intermediate_size"`},
		{"override index", func(x map[string]any) { x["per_layer_config"] = map[string]any{"30": map[string]any{"head_dim": 9}} }, `key "30"`},
		{"heads", func(x map[string]any) { x["num_global_key_value_heads"] = 3 }, "not a multiple of 3"},
		{"topk", func(x map[string]any) { x["top_k_experts"] = 129 }, "top_k_experts 129"},
		{"ple vocab", func(x map[string]any) { x["hidden_size_per_layer_input"], x["vocab_size_per_layer_input"] = 256, 1000 }, "vocab_size_per_layer_input 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := hubText()
			tt.edit(x)
			_, err := parse(t, x)
			require.ErrorIs(t, err, fault.ErrUnsupported)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// FuzzParseOptions: ParseOptions on any config modelconfig accepts returns
// an error or options whose per-layer geometry is consistent, and never
// panics or sizes anything from an unchecked field.
func FuzzParseOptions(f *testing.F) {
	// testdata/fuzz/FuzzParseOptions holds the fixtures' configs and edge
	// cases; the hub-shaped config joins them here.
	if b, err := json.Marshal(map[string]any{"model_type": "gemma4", "text_config": hubText()}); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := modelconfig.Parse(data)
		if err != nil {
			return
		}
		o, err := gemma4.ParseOptions(cfg)
		if err != nil {
			return
		}
		require.Len(t, o.Layer, o.Layers)
		slots := 0
		for i, l := range o.Layer {
			require.Positive(t, l.HeadDim)
			require.Zero(t, l.Heads%l.KVHeads)
			require.Len(t, l.RoPE.InvFreq, l.HeadDim/2)
			require.Less(t, l.SharesKV, i)
			if l.SharesKV >= 0 {
				require.Equal(t, -1, l.Slot)
				require.Equal(t, l.Kind, o.Layer[l.SharesKV].Kind)
				require.GreaterOrEqual(t, o.Layer[l.SharesKV].Slot, 0)
			} else {
				require.Equal(t, slots, l.Slot)
				slots++
			}
		}
		require.Equal(t, slots, o.Slots())
		require.Equal(t, gemma4.Full, o.Layer[o.Layers-1].Kind)
	})
}
