package modelconfig_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/stretchr/testify/require"
)

// The testdata configs are the ones transformers 5.17 wrote for the tiny
// reference checkpoints (and MLX conversions of them).
func TestFixtures(t *testing.T) {
	tests := []struct {
		file            string
		modelType       string
		wrapped         bool
		hidden, layers  int
		experts, topK   int
		expertWidth     int
		layerTypes      []string
		moeLayers       []int
		compressRatios  []int
		tied            bool
		quantMode       string
		quantBits       int
		quantGroup      int
		kvHeadsLastFull int
		headDimLastFull int
	}{
		{file: "qwen3_moe.json", modelType: "qwen3_moe", hidden: 64, layers: 3, experts: 8, topK: 2, expertWidth: 32,
			layerTypes: []string{"full_attention", "full_attention", "full_attention"}, moeLayers: []int{0, 1, 2},
			kvHeadsLastFull: 2, headDimLastFull: 16},
		{file: "qwen3_5_moe.json", modelType: "qwen3_5_moe", wrapped: true, hidden: 64, layers: 4, experts: 8, topK: 2, expertWidth: 32,
			layerTypes: []string{"linear_attention", "linear_attention", "linear_attention", "full_attention"}, moeLayers: []int{0, 1, 2, 3},
			kvHeadsLastFull: 2, headDimLastFull: 16},
		{file: "gpt_oss.json", modelType: "gpt_oss", hidden: 64, layers: 4, experts: 8, topK: 2, expertWidth: 32,
			layerTypes: []string{"sliding_attention", "full_attention", "sliding_attention", "full_attention"}, moeLayers: []int{0, 1, 2, 3},
			kvHeadsLastFull: 2, headDimLastFull: 16},
		{file: "gemma4.json", modelType: "gemma4", wrapped: true, hidden: 64, layers: 4, experts: 8, topK: 2, expertWidth: 32, tied: true,
			layerTypes: []string{"sliding_attention", "sliding_attention", "sliding_attention", "full_attention"}, moeLayers: []int{0, 1, 2, 3},
			// per_layer_config gives the full layer head_dim 512.
			kvHeadsLastFull: 2, headDimLastFull: 512},
		{file: "deepseek_v4.json", modelType: "deepseek_v4", hidden: 64, layers: 4, experts: 8, topK: 2, expertWidth: 32,
			layerTypes:     []string{"heavily_compressed_attention", "compressed_sparse_attention", "sliding_attention", "compressed_sparse_attention"},
			moeLayers:      []int{0, 1, 2, 3},
			compressRatios: []int{8, 4, 0, 4}, kvHeadsLastFull: 1, headDimLastFull: 32},
		{file: "qwen3_moe_mlx4.json", modelType: "qwen3_moe", hidden: 64, layers: 3, experts: 8, topK: 2, expertWidth: 64,
			layerTypes: []string{"full_attention", "full_attention", "full_attention"}, moeLayers: []int{0, 2},
			quantMode: "affine", quantBits: 4, quantGroup: 64, kvHeadsLastFull: 2, headDimLastFull: 16},
		{file: "gpt_oss_mxfp4.json", modelType: "gpt_oss", hidden: 64, layers: 4, experts: 8, topK: 2, expertWidth: 32,
			layerTypes: []string{"sliding_attention", "full_attention", "sliding_attention", "full_attention"}, moeLayers: []int{0, 1, 2, 3},
			quantMode: "mxfp4", quantBits: 4, quantGroup: 32, kvHeadsLastFull: 2, headDimLastFull: 16},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := modelconfig.ReadFile(filepath.Join("testdata", tt.file))
			require.NoError(t, err)
			require.Equal(t, tt.modelType, c.ModelType)
			require.Equal(t, tt.wrapped, c.Wrapped)
			require.Equal(t, tt.hidden, c.HiddenSize)
			require.Equal(t, tt.layers, c.NumLayers)
			require.Equal(t, tt.experts, c.NumExperts)
			require.Equal(t, tt.topK, c.ExpertsPerToken)
			require.Equal(t, tt.expertWidth, c.ExpertWidth())
			require.Equal(t, tt.layerTypes, c.LayerTypes)
			require.Equal(t, tt.moeLayers, c.MoELayers())
			require.Equal(t, tt.compressRatios, c.CompressRatios)
			require.Equal(t, tt.tied, c.TieWordEmbeddings)
			require.Equal(t, 512, c.MaxPositionEmbeddings)
			require.NotEmpty(t, c.Raw)
			require.NotEmpty(t, c.Text)
			kv, hd := c.LayerAttention(c.NumLayers - 1)
			require.Equal(t, tt.kvHeadsLastFull, kv)
			require.Equal(t, tt.headDimLastFull, hd)
			if tt.quantMode == "" {
				require.Nil(t, c.Quant)
				return
			}
			require.NotNil(t, c.Quant)
			require.Equal(t, tt.quantMode, c.Quant.Mode)
			require.Equal(t, tt.quantBits, c.Quant.Bits)
			require.Equal(t, tt.quantGroup, c.Quant.GroupSize)
		})
	}
}

func TestWrappedKeepsTextConfigRaw(t *testing.T) {
	c, err := modelconfig.ReadFile(filepath.Join("testdata", "qwen3_5_moe.json"))
	require.NoError(t, err)
	require.Equal(t, "qwen3_5_moe_text", c.TextModelType)
	require.Contains(t, string(c.Text), `"linear_num_value_heads"`)
	require.NotContains(t, string(c.Text), `"vision_config"`)
	require.Equal(t, 2, c.LinearNumKeyHeads)
	require.Equal(t, 4, c.LinearNumValueHeads)
	require.Equal(t, 16, c.LinearKeyHeadDim)
	require.Equal(t, 4, c.LinearConvKernelDim)
	require.Equal(t, 32, c.SharedExpertIntermediateSize)
}

// Every spelling of the expert counts that configs in the wild use.
func TestLegacyKeys(t *testing.T) {
	tests := []struct {
		name          string
		json          string
		experts, topK int
		width         int
	}{
		{"qwen3_moe num_experts", `{"model_type":"qwen3_moe","num_experts":128,"num_experts_per_tok":8,"moe_intermediate_size":768}`, 128, 8, 768},
		{"qwen3_moe transformers 5.17", `{"model_type":"qwen3_moe","num_local_experts":128,"num_experts_per_tok":8,"moe_intermediate_size":768}`, 128, 8, 768},
		{"gpt_oss experts_per_token", `{"model_type":"gpt_oss","num_local_experts":32,"experts_per_token":4,"intermediate_size":2880}`, 32, 4, 2880},
		{"gpt_oss both spellings", `{"model_type":"gpt_oss","num_local_experts":32,"num_experts_per_tok":4,"experts_per_token":4,"intermediate_size":2880}`, 32, 4, 2880},
		{"deepseek n_routed_experts", `{"model_type":"deepseek_v4","n_routed_experts":256,"num_experts_per_tok":6,"moe_intermediate_size":2048}`, 256, 6, 2048},
		{"gemma4 top_k_experts", `{"model_type":"gemma4","text_config":{"num_experts":128,"top_k_experts":8,"moe_intermediate_size":704}}`, 128, 8, 704},
		{"integral float", `{"model_type":"qwen3_moe","num_experts":8.0,"num_experts_per_tok":2,"moe_intermediate_size":32}`, 8, 2, 32},
		{"null is absent", `{"model_type":"qwen3_moe","num_experts":null,"num_local_experts":16,"num_experts_per_tok":2}`, 16, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := modelconfig.Parse([]byte(tt.json))
			require.NoError(t, err)
			require.Equal(t, tt.experts, c.NumExperts)
			require.Equal(t, tt.topK, c.ExpertsPerToken)
			require.Equal(t, tt.width, c.ExpertWidth())
		})
	}
}

func TestDerivedLayerTypes(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []string
	}{
		{"qwen3_5 default interval", `{"model_type":"qwen3_5_moe","text_config":{"num_hidden_layers":8}}`,
			[]string{"linear_attention", "linear_attention", "linear_attention", "full_attention", "linear_attention", "linear_attention", "linear_attention", "full_attention"}},
		{"qwen3_5 interval 2", `{"model_type":"qwen3_5_moe","text_config":{"num_hidden_layers":4,"full_attention_interval":2}}`,
			[]string{"linear_attention", "full_attention", "linear_attention", "full_attention"}},
		{"gpt_oss alternates", `{"model_type":"gpt_oss","num_hidden_layers":3}`,
			[]string{"sliding_attention", "full_attention", "sliding_attention"}},
		{"gemma4 5:1 and last full", `{"model_type":"gemma4","text_config":{"num_hidden_layers":8}}`,
			[]string{"sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention"}},
		{"deepseek compress_ratios (with the MTP entry)", `{"model_type":"deepseek_v4","num_hidden_layers":3,"compress_ratios":[0,4,128,0]}`,
			[]string{"sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention"}},
		{"plain model", `{"model_type":"qwen3_moe","num_hidden_layers":2}`, []string{"full_attention", "full_attention"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := modelconfig.Parse([]byte(tt.json))
			require.NoError(t, err)
			require.Equal(t, tt.want, c.LayerTypes)
		})
	}
	c, err := modelconfig.Parse([]byte(`{"model_type":"deepseek_v4","num_hidden_layers":3,"compress_ratios":[0,4,128,0]}`))
	require.NoError(t, err)
	require.Equal(t, []int{0, 4, 128}, c.CompressRatios)
}

func TestMoELayers(t *testing.T) {
	tests := []struct {
		json string
		want []int
	}{
		{`{"num_hidden_layers":4,"num_experts":8}`, []int{0, 1, 2, 3}},
		{`{"num_hidden_layers":4,"num_experts":8,"mlp_only_layers":[0,2]}`, []int{1, 3}},
		{`{"num_hidden_layers":4,"num_experts":8,"decoder_sparse_step":2}`, []int{1, 3}},
		{`{"num_hidden_layers":4,"n_routed_experts":8,"first_k_dense_replace":1}`, []int{1, 2, 3}},
		{`{"num_hidden_layers":4,"num_experts":0}`, nil},
		{`{"model_type":"gemma4","text_config":{"num_hidden_layers":2,"num_experts":8,"enable_moe_block":false}}`, nil},
	}
	for _, tt := range tests {
		c, err := modelconfig.Parse([]byte(tt.json))
		require.NoError(t, err, tt.json)
		require.Equal(t, tt.want, c.MoELayers(), tt.json)
	}
}

// mach-prune writes num_experts_per_layer when layers keep different
// numbers of experts; dense layers count 0.
func TestLayerExperts(t *testing.T) {
	c, err := modelconfig.Parse([]byte(`{"model_type":"qwen3_moe","num_hidden_layers":3,"num_experts":6,"mlp_only_layers":[1],
		"num_experts_per_layer":[6,0,4]}`))
	require.NoError(t, err)
	require.Equal(t, []int{6, 0, 4}, c.ExpertsPerLayer)
	require.Equal(t, []int{6, 0, 4, 0}, []int{c.LayerExperts(0), c.LayerExperts(1), c.LayerExperts(2), c.LayerExperts(3)})
	c, err = modelconfig.Parse([]byte(`{"model_type":"qwen3_moe","num_hidden_layers":3,"num_experts":8,"mlp_only_layers":[1]}`))
	require.NoError(t, err)
	require.Nil(t, c.ExpertsPerLayer)
	require.Equal(t, []int{8, 0, 8}, []int{c.LayerExperts(0), c.LayerExperts(1), c.LayerExperts(2)})
}

func TestQuantizationBlocks(t *testing.T) {
	t.Run("mlx with overrides", func(t *testing.T) {
		c, err := modelconfig.Parse([]byte(`{"model_type":"qwen3_moe","quantization":{"group_size":64,"bits":4,
			"model.layers.0.mlp.gate":{"group_size":64,"bits":8},"model.layers.1.mlp.gate":false,
			"model.layers.0.mlp.switch_mlp.down_proj":{"bits":6,"mode":"affine"}},
			"quantization_config":{"quant_method":"ignored-because-mlx-wins"}}`))
		require.NoError(t, err)
		q := c.Quant
		require.Equal(t, "quantization", q.Key)
		require.Equal(t, "affine", q.Mode) // older checkpoints have no mode
		require.Equal(t, modelconfig.ModuleQuant{Quantized: true, Mode: "affine", Bits: 8, GroupSize: 64}, q.ForModule("model.layers.0.mlp.gate"))
		require.Equal(t, modelconfig.ModuleQuant{}, q.ForModule("model.layers.1.mlp.gate"))
		require.Equal(t, modelconfig.ModuleQuant{Quantized: true, Mode: "affine", Bits: 6, GroupSize: 64}, q.ForModule("model.layers.0.mlp.switch_mlp.down_proj"))
		require.Equal(t, modelconfig.ModuleQuant{Quantized: true, Mode: "affine", Bits: 4, GroupSize: 64}, q.ForModule("model.embed_tokens"))
	})
	t.Run("mlx mxfp4 defaults", func(t *testing.T) {
		c, err := modelconfig.Parse([]byte(`{"model_type":"gpt_oss","quantization":{"mode":"mxfp4"}}`))
		require.NoError(t, err)
		require.Equal(t, "mxfp4", c.Quant.Mode)
		require.Equal(t, 4, c.Quant.Bits)
		require.Equal(t, 32, c.Quant.GroupSize)
	})
	t.Run("hf fp8", func(t *testing.T) {
		c, err := modelconfig.Parse([]byte(`{"model_type":"deepseek_v4","quantization_config":{"quant_method":"fp8","fmt":"e4m3","weight_block_size":[128,128]}}`))
		require.NoError(t, err)
		require.Equal(t, "fp8", c.Quant.Mode)
		require.Equal(t, 8, c.Quant.Bits)
		require.Equal(t, 128, c.Quant.GroupSize)
		require.Equal(t, "quantization_config", c.Quant.Key)
	})
	t.Run("inside text_config", func(t *testing.T) {
		c, err := modelconfig.Parse([]byte(`{"model_type":"qwen3_5_moe","text_config":{"num_hidden_layers":1,"quantization":{"bits":8,"group_size":32}}}`))
		require.NoError(t, err)
		require.Equal(t, "text_config.quantization", c.Quant.Key)
		require.Equal(t, 8, c.Quant.Bits)
		require.Equal(t, 32, c.Quant.GroupSize)
	})
	t.Run("top level wins over text_config", func(t *testing.T) {
		c, err := modelconfig.Parse([]byte(`{"model_type":"gemma4","quantization":{"bits":4,"group_size":64},"text_config":{"quantization":{"bits":8,"group_size":32}}}`))
		require.NoError(t, err)
		require.Equal(t, "quantization", c.Quant.Key)
		require.Equal(t, 4, c.Quant.Bits)
	})
	t.Run("unknown method is kept", func(t *testing.T) {
		c, err := modelconfig.Parse([]byte(`{"model_type":"qwen3_moe","quantization_config":{"quant_method":"AWQ","bits":4,"group_size":128}}`))
		require.NoError(t, err)
		require.Equal(t, "awq", c.Quant.Mode)
		require.Equal(t, 4, c.Quant.Bits)
		require.Equal(t, 128, c.Quant.GroupSize)
	})
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"empty", ``, "not a JSON object"},
		{"array", `[1,2]`, "not a JSON object"},
		{"broken", `{"model_type": "qwen3_moe",`, "invalid config.json"},
		{"model_type number", `{"model_type": 3}`, "model_type: want a string"},
		{"negative", `{"model_type":"qwen3_moe","hidden_size":-1}`, "hidden_size: want a non-negative integer"},
		{"fraction", `{"model_type":"qwen3_moe","num_hidden_layers":2.5}`, "num_hidden_layers"},
		{"huge", `{"model_type":"qwen3_moe","vocab_size":1e30}`, "vocab_size"},
		{"string int", `{"model_type":"qwen3_moe","num_experts":"8"}`, "num_experts: want a non-negative integer, got \"8\""},
		{"text_config not object", `{"model_type":"gemma4","text_config":[1]}`, "text_config is not a JSON object"},
		{"nested field named", `{"model_type":"gemma4","text_config":{"hidden_size":true}}`, "text_config.hidden_size"},
		{"short layer_types", `{"model_type":"gpt_oss","num_hidden_layers":3,"layer_types":["full_attention"]}`, "layer_types has 1 entries for 3 layers"},
		{"unknown kind", `{"model_type":"gpt_oss","num_hidden_layers":1,"layer_types":["quantum_attention"]}`, `unknown attention kind "quantum_attention"`},
		{"bad override", `{"model_type":"qwen3_moe","quantization":{"bits":4,"x":{"bits":"four"}}}`, "quantization.x.bits"},
		{"bad per_layer_config", `{"model_type":"gemma4","text_config":{"per_layer_config":{"three":{}}}}`, "not a layer index"},
		{"mlp_only_layers", `{"model_type":"qwen3_moe","mlp_only_layers":[1,"x"]}`, "mlp_only_layers[1]"},
		{"num_experts_per_layer length", `{"model_type":"qwen3_moe","num_hidden_layers":3,"num_experts":8,"num_experts_per_layer":[8,6]}`, "num_experts_per_layer has 2 entries for 3 layers"},
		{"num_experts_per_layer value", `{"model_type":"qwen3_moe","num_hidden_layers":2,"num_experts":8,"num_experts_per_layer":[8,-1]}`, "num_experts_per_layer[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := modelconfig.Parse([]byte(tt.json))
			require.Error(t, err)
			require.ErrorIs(t, err, modelconfig.ErrInvalid)
			require.ErrorIs(t, err, fault.ErrIO)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := modelconfig.Load(dir)
	require.ErrorIs(t, err, fault.ErrIO)
	require.Contains(t, err.Error(), "must contain config.json")

	p := filepath.Join(dir, "config.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"model_type": `), 0o644))
	_, err = modelconfig.Load(dir)
	require.ErrorIs(t, err, modelconfig.ErrInvalid)
	require.Contains(t, err.Error(), p, "the error names the file")

	big := `{"model_type":"qwen3_moe","pad":"` + strings.Repeat("x", modelconfig.MaxSize) + `"}`
	require.NoError(t, os.WriteFile(p, []byte(big), 0o644))
	_, err = modelconfig.Load(dir)
	require.ErrorIs(t, err, modelconfig.ErrInvalid)
	require.Contains(t, err.Error(), "larger than")
}

// DecodeText refuses another architecture's config and malformed JSON,
// classified, and decodes the text config otherwise.
func TestDecodeText(t *testing.T) {
	c := &modelconfig.Config{ModelType: "qwen3_moe", Path: "a/config.json", Text: []byte(`{"rms_norm_eps": 1e-6}`)}
	var x struct {
		Eps float64 `json:"rms_norm_eps"`
	}
	require.NoError(t, c.DecodeText("qwen3_moe", &x))
	require.Equal(t, 1e-6, x.Eps)
	err := c.DecodeText("gpt_oss", &x)
	require.ErrorIs(t, err, fault.ErrUnsupported)
	require.EqualError(t, err, `a/config.json: model_type "qwen3_moe" is not gpt_oss`)
	c.Text = []byte(`{"rms_norm_eps": "x"}`)
	require.ErrorIs(t, c.DecodeText("qwen3_moe", &x), fault.ErrIO)
}
