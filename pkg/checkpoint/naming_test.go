package checkpoint_test

import (
	"testing"

	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/stretchr/testify/require"
)

func TestClassify(t *testing.T) {
	type et = checkpoint.ExpertTensor
	tests := []struct {
		arch, name string
		kind       checkpoint.Kind
		want       et
	}{
		// Hugging Face hub, per expert.
		{"qwen3_moe", "model.layers.3.mlp.experts.17.gate_proj.weight", checkpoint.RoutedExpert,
			et{Layer: 3, Expert: 17, Proj: checkpoint.Gate, Part: checkpoint.Weight, Module: "model.layers.3.mlp.experts.17.gate_proj"}},
		{"qwen3_5_moe", "model.language_model.layers.0.mlp.experts.7.down_proj.weight", checkpoint.RoutedExpert,
			et{Layer: 0, Expert: 7, Proj: checkpoint.Down, Part: checkpoint.Weight, Module: "model.language_model.layers.0.mlp.experts.7.down_proj"}},
		// transformers 5.x fused.
		{"qwen3_5_moe", "model.language_model.layers.2.mlp.experts.gate_up_proj", checkpoint.RoutedExpert,
			et{Layer: 2, Expert: -1, Proj: checkpoint.GateUp, Part: checkpoint.Weight, Module: "model.language_model.layers.2.mlp.experts.gate_up_proj"}},
		{"gemma4", "model.language_model.layers.1.experts.down_proj", checkpoint.RoutedExpert,
			et{Layer: 1, Expert: -1, Proj: checkpoint.Down, Part: checkpoint.Weight, Module: "model.language_model.layers.1.experts.down_proj"}},
		{"gpt_oss", "model.layers.0.mlp.experts.gate_up_proj", checkpoint.RoutedExpert,
			et{Layer: 0, Expert: -1, Proj: checkpoint.GateUp, Part: checkpoint.Weight, Module: "model.layers.0.mlp.experts.gate_up_proj", Transposed: true, Interleaved: true}},
		{"gpt_oss", "model.layers.0.mlp.experts.gate_up_proj_bias", checkpoint.RoutedExpert,
			et{Layer: 0, Expert: -1, Proj: checkpoint.GateUp, Part: checkpoint.Bias, Module: "model.layers.0.mlp.experts.gate_up_proj", Interleaved: true}},
		{"gpt_oss", "model.layers.5.mlp.experts.down_proj_blocks", checkpoint.RoutedExpert,
			et{Layer: 5, Expert: -1, Proj: checkpoint.Down, Part: checkpoint.Blocks, Module: "model.layers.5.mlp.experts.down_proj"}},
		{"gpt_oss", "model.layers.5.mlp.experts.gate_up_proj_scales", checkpoint.RoutedExpert,
			et{Layer: 5, Expert: -1, Proj: checkpoint.GateUp, Part: checkpoint.Scales, Module: "model.layers.5.mlp.experts.gate_up_proj", Interleaved: true}},
		{"deepseek_v4", "model.layers.1.mlp.experts.gate_up_proj", checkpoint.RoutedExpert,
			et{Layer: 1, Expert: -1, Proj: checkpoint.GateUp, Part: checkpoint.Weight, Module: "model.layers.1.mlp.experts.gate_up_proj"}},
		// MLX stacked.
		{"qwen3_moe", "model.layers.0.mlp.switch_mlp.up_proj.scales", checkpoint.RoutedExpert,
			et{Layer: 0, Expert: -1, Proj: checkpoint.Up, Part: checkpoint.Scales, Module: "model.layers.0.mlp.switch_mlp.up_proj"}},
		{"qwen3_5_moe", "language_model.model.layers.9.mlp.switch_mlp.down_proj.biases", checkpoint.RoutedExpert,
			et{Layer: 9, Expert: -1, Proj: checkpoint.Down, Part: checkpoint.Biases, Module: "language_model.model.layers.9.mlp.switch_mlp.down_proj"}},
		{"gemma4", "language_model.model.layers.0.experts.switch_glu.gate_proj.weight", checkpoint.RoutedExpert,
			et{Layer: 0, Expert: -1, Proj: checkpoint.Gate, Part: checkpoint.Weight, Module: "language_model.model.layers.0.experts.switch_glu.gate_proj"}},
		{"gpt_oss", "model.layers.0.mlp.experts.up_proj.bias", checkpoint.RoutedExpert,
			et{Layer: 0, Expert: -1, Proj: checkpoint.Up, Part: checkpoint.Bias, Module: "model.layers.0.mlp.experts.up_proj"}},
		{"deepseek_v4", "layers.4.ffn.experts.w2.scales", checkpoint.RoutedExpert,
			et{Layer: 4, Expert: -1, Proj: checkpoint.Down, Part: checkpoint.Scales, Module: "layers.4.ffn.experts.w2"}},
		// DeepSeek native, per expert, FP4 with a block scale.
		{"deepseek_v4", "layers.2.ffn.experts.255.w3.weight", checkpoint.RoutedExpert,
			et{Layer: 2, Expert: 255, Proj: checkpoint.Up, Part: checkpoint.Weight, Module: "layers.2.ffn.experts.255.w3"}},
		{"deepseek_v4", "model.layers.0.ffn.experts.0.w1.scale", checkpoint.RoutedExpert,
			et{Layer: 0, Expert: 0, Proj: checkpoint.Gate, Part: checkpoint.Scale, Module: "model.layers.0.ffn.experts.0.w1"}},
		// MTP heads.
		{"qwen3_5_moe", "mtp.layers.0.mlp.experts.3.gate_proj.weight", checkpoint.RoutedExpert,
			et{Layer: 0, MTP: true, Expert: 3, Proj: checkpoint.Gate, Part: checkpoint.Weight, Module: "mtp.layers.0.mlp.experts.3.gate_proj"}},
		{"deepseek_v4", "mtp.0.ffn.experts.1.w2.weight", checkpoint.RoutedExpert,
			et{Layer: 0, MTP: true, Expert: 1, Proj: checkpoint.Down, Part: checkpoint.Weight, Module: "mtp.0.ffn.experts.1.w2"}},
		// Not routed experts.
		{"qwen3_5_moe", "model.language_model.layers.0.mlp.shared_expert.gate_proj.weight", checkpoint.Other, et{}},
		{"qwen3_5_moe", "model.language_model.layers.0.mlp.shared_expert_gate.weight", checkpoint.Other, et{}},
		{"deepseek_v4", "layers.0.ffn.shared_experts.w1.weight", checkpoint.Other, et{}},
		{"qwen3_moe", "model.layers.0.mlp.gate.weight", checkpoint.Other, et{}},
		{"gpt_oss", "model.layers.0.mlp.router.weight", checkpoint.Other, et{}},
		{"gemma4", "model.language_model.layers.0.router.per_expert_scale", checkpoint.Other, et{}},
		{"gemma4", "model.language_model.layers.0.mlp.gate_proj.weight", checkpoint.Other, et{}},
		{"qwen3_moe", "model.embed_tokens.weight", checkpoint.Other, et{}},
		{"qwen3_moe", "model.layers.x.mlp.experts.0.gate_proj.weight", checkpoint.Other, et{}},
		{"qwen3_moe", "model.layers.01.mlp.experts.0.gate_proj.weight", checkpoint.Other, et{}},
		{"qwen3_moe", "model.layers.0.mlp.experts.0.gate_proj.lora", checkpoint.Other, et{}},
		{"qwen3_moe", "model.layers.0.mlp.experts.-1.gate_proj.weight", checkpoint.Other, et{}},
		// Multimodal towers.
		{"qwen3_5_moe", "model.visual.blocks.0.mlp.linear_fc1.weight", checkpoint.Skipped, et{}},
		{"gemma4", "model.vision_tower.encoder.layers.0.mlp.gate_proj.linear.weight", checkpoint.Skipped, et{}},
		{"gemma4", "model.embed_vision.embedding_projection.weight", checkpoint.Skipped, et{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, got := checkpoint.Classify(tt.arch, tt.name)
			require.Equal(t, tt.kind, kind)
			require.Equal(t, tt.want, got)
			if kind == checkpoint.RoutedExpert {
				require.Equal(t, tt.want.Expert < 0, got.Stacked())
			}
		})
	}
}

func TestBlockPrefixAndExpertName(t *testing.T) {
	tests := []struct {
		arch, name, block string
		proj              checkpoint.Proj
		part              checkpoint.Part
		engine            string // ExpertName(arch, block, 5, proj, part)
	}{
		{"qwen3_moe", "model.layers.3.mlp.experts.17.gate_proj.weight", "model.layers.3.mlp.", checkpoint.Gate, checkpoint.Weight,
			"model.layers.3.mlp.experts.5.gate_proj.weight"},
		{"qwen3_moe", "model.layers.0.mlp.switch_mlp.up_proj.scales", "model.layers.0.mlp.", checkpoint.Up, checkpoint.Scales,
			"model.layers.0.mlp.experts.5.up_proj.scales"},
		{"qwen3_5_moe", "language_model.model.layers.9.mlp.switch_mlp.down_proj.biases", "language_model.model.layers.9.mlp.", checkpoint.Down, checkpoint.Biases,
			"language_model.model.layers.9.mlp.experts.5.down_proj.biases"},
		{"qwen3_5_moe", "model.language_model.layers.2.mlp.experts.gate_up_proj", "model.language_model.layers.2.mlp.", checkpoint.Gate, checkpoint.Weight,
			"model.language_model.layers.2.mlp.experts.5.gate_proj.weight"},
		{"gemma4", "model.language_model.layers.1.experts.down_proj", "model.language_model.layers.1.", checkpoint.Down, checkpoint.Weight,
			"model.language_model.layers.1.experts.5.down_proj.weight"},
		{"gemma4", "language_model.model.layers.0.experts.switch_glu.gate_proj.weight", "language_model.model.layers.0.", checkpoint.Gate, checkpoint.Weight,
			"language_model.model.layers.0.experts.5.gate_proj.weight"},
		{"gpt_oss", "model.layers.5.mlp.experts.gate_up_proj_blocks", "model.layers.5.mlp.", checkpoint.Up, checkpoint.Bias,
			"model.layers.5.mlp.experts.5.up_proj.bias"},
		{"deepseek_v4", "model.layers.0.ffn.experts.3.w1.weight", "model.layers.0.ffn.", checkpoint.Gate, checkpoint.Scale,
			"model.layers.0.ffn.experts.5.w1.scale"},
		{"deepseek_v4", "layers.4.ffn.experts.w2.scales", "layers.4.ffn.", checkpoint.Down, checkpoint.Scales,
			"layers.4.ffn.experts.5.w2.scales"},
		{"qwen3_5_moe", "mtp.layers.0.mlp.experts.3.gate_proj.weight", "mtp.layers.0.mlp.", checkpoint.Up, checkpoint.Weight,
			"mtp.layers.0.mlp.experts.5.up_proj.weight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			block, ok := checkpoint.BlockPrefix(tt.arch, tt.name)
			require.True(t, ok)
			require.Equal(t, tt.block, block)
			name := checkpoint.ExpertName(tt.arch, block, 5, tt.proj, tt.part)
			require.Equal(t, tt.engine, name)
			// The engine layout's names classify back to what they hold.
			kind, et := checkpoint.Classify(tt.arch, name)
			require.Equal(t, checkpoint.RoutedExpert, kind)
			require.Equal(t, 5, et.Expert)
			require.Equal(t, tt.proj, et.Proj)
			require.Equal(t, tt.part, et.Part)
			b2, ok := checkpoint.BlockPrefix(tt.arch, name)
			require.True(t, ok)
			require.Equal(t, block, b2)
		})
	}
	_, ok := checkpoint.BlockPrefix("qwen3_moe", "model.layers.0.mlp.gate.weight")
	require.False(t, ok)
}

func TestClassifyRouter(t *testing.T) {
	rows := func(l int) checkpoint.RouterTensor {
		return checkpoint.RouterTensor{Kind: checkpoint.RouterRows, Layer: l}
	}
	tests := []struct {
		arch, name string
		want       checkpoint.RouterTensor
	}{
		{"qwen3_moe", "model.layers.2.mlp.gate.weight", rows(2)},
		{"qwen3_moe", "model.layers.2.mlp.gate.scales", rows(2)},
		{"qwen3_5_moe", "language_model.model.layers.1.mlp.gate.biases", rows(1)},
		{"gpt_oss", "model.layers.0.mlp.router.weight", rows(0)},
		{"gpt_oss", "model.layers.3.mlp.router.bias", rows(3)},
		{"gemma4", "model.language_model.layers.1.router.proj.weight", rows(1)},
		{"gemma4", "language_model.model.layers.0.router.proj.scales", rows(0)},
		{"gemma4", "model.language_model.layers.2.router.per_expert_scale", rows(2)},
		{"deepseek_v4", "model.layers.1.ffn.gate.bias", rows(1)},
		{"deepseek_v4", "layers.1.ffn.gate.weight", rows(1)},
		{"deepseek_v4", "model.layers.0.ffn.gate.tid2eid", checkpoint.RouterTensor{Kind: checkpoint.RouterHash}},
		{"deepseek_v4", "model.layers.0.mlp.gate.e_score_correction_bias", rows(0)},
		{"qwen3_5_moe", "mtp.layers.0.mlp.gate.weight", checkpoint.RouterTensor{Kind: checkpoint.RouterRows, MTP: true}},
		// Not indexed by expert.
		{"gemma4", "model.language_model.layers.0.router.scale", checkpoint.RouterTensor{}},
		{"qwen3_5_moe", "model.language_model.layers.0.mlp.shared_expert_gate.weight", checkpoint.RouterTensor{}},
		{"gemma4", "model.language_model.layers.0.mlp.gate_proj.weight", checkpoint.RouterTensor{}},
		{"deepseek_v4", "model.layers.0.attn.compressor.wgate.weight", checkpoint.RouterTensor{}},
		{"qwen3_moe", "model.layers.0.mlp.experts.0.gate_proj.weight", checkpoint.RouterTensor{}},
		{"qwen3_moe", "model.embed_tokens.weight", checkpoint.RouterTensor{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, checkpoint.ClassifyRouter(tt.arch, tt.name))
		})
	}
}
