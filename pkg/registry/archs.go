package registry

import "github.com/maniac-ai/mach/pkg/archconfig"

const modulePrefix = "github.com/maniac-ai/mach/pkg/model/"

// Default returns the registry of the five architectures mach ships. The
// facts come from ../shared/notes/architectures.md and the seed's mach-archs
// table, checked against each model's reference implementation in
// transformers (comments say where they differ).
func Default() *Registry {
	r, err := New(
		Arch{
			ModelType:  "deepseek_v4",
			Name:       "DeepSeek-V4-Flash",
			Activation: SiLULimited,
			// Routed experts clamp like gpt-oss but without alpha and +1:
			// g = min(g, L), u = clamp(u, ±L), silu(g)·u, L = config swiglu_limit.
			ActivationParams: ActivationParams{Alpha: 1, UpOffset: 0, LimitKey: "swiglu_limit", DefaultLimit: 10},
			// Upstream stacks experts on axis 0 in FP4; they must be sliced
			// into the per-expert engine layout (mach-prune) first.
			Stacked:      false,
			ExpertBias:   false,
			Wrapped:      false,
			DefaultBits:  4,
			DefaultGroup: 32,
			DefaultQuant: QuantMXFP4,
			ModelModule:  modulePrefix + "deepseekv4",
			KVCache:      KVCompressed,
			Specdec:      MTPEagle3,
			// pkg/model/deepseekv4: parity with transformers on the
			// deepseek_v4 fixture (logits, the reference greedy and
			// transformers' cached generate through the compressed cache);
			// FP8/FP4 weights bit-identical to their dequantized values;
			// batched steps and prefix reuse over per-sequence compressed
			// caches bit-identical, there and through pkg/scheduler;
			// experts streamed from an exported sidecar (FP4 as MXFP4)
			// bit-identical to resident.
			Support: Support{Forward: true, Batching: true, PrefixReuse: true, Streaming: true},
		},
		Arch{
			ModelType:    "gemma4",
			Name:         "Gemma 4 MoE",
			Activation:   PlainGeGLU,
			Stacked:      true,
			Wrapped:      true,
			DefaultBits:  4,
			DefaultGroup: 64,
			DefaultQuant: QuantAffine,
			ModelModule:  modulePrefix + "gemma4",
			KVCache:      KVRotating,
			Specdec:      SpecdecNone,
			// pkg/model/gemma4: parity with transformers on the gemma4,
			// gemma4_mlx4 and gemma4_ple fixtures, and batched steps over
			// per-sequence rotating caches bit-identical to single ones.
			// pkg/scheduler: prefix reuse (cut back in the window or to a
			// snapshot) gives the cold run's tokens on the gemma4 fixture.
			Support: Support{Forward: true, Batching: true, PrefixReuse: true, Streaming: true},
		},
		Arch{
			ModelType:        "gpt_oss",
			Name:             "gpt-oss",
			Activation:       SiLULimited,
			ActivationParams: ActivationParams{Alpha: 1.702, UpOffset: 1, LimitKey: "swiglu_limit", DefaultLimit: 7},
			Stacked:          true,
			ExpertBias:       true,
			DefaultBits:      4,
			DefaultGroup:     32,
			DefaultQuant:     QuantMXFP4,
			ModelModule:      modulePrefix + "gptoss",
			KVCache:          KVRotating,
			Specdec:          SpecdecNone,
			// pkg/model/gptoss: parity with transformers on every gpt_oss
			// fixture (f32, bf16, MXFP4 blocks, MLX), and batched steps of
			// sequences crossing the sliding window over per-sequence
			// rotating caches bit-identical to single ones. pkg/scheduler:
			// prefix reuse gives the cold run's tokens on the gpt_oss fixture.
			Support: Support{Forward: true, Batching: true, PrefixReuse: true, Streaming: true},
		},
		Arch{
			ModelType:    "qwen3_5_moe",
			Name:         "Qwen3.5 / Qwen3.6 MoE",
			Activation:   PlainSwiGLU,
			Stacked:      true,
			Wrapped:      true,
			DefaultBits:  4,
			DefaultGroup: 64,
			DefaultQuant: QuantAffine,
			ModelModule:  modulePrefix + "qwen35moe",
			KVCache:      KVHybridGDN,
			Specdec:      SpecdecV7,
			// pkg/model/qwen35moe: parity with transformers on the
			// qwen3_5_moe, _bf16, _mlx and _mlx4 fixtures; batched steps
			// over per-sequence hybrid caches bit-identical to single ones
			// (there and through pkg/scheduler); prefix reuse through the
			// scheduler restoring recurrent-state snapshots.
			Support: Support{Forward: true, Batching: true, PrefixReuse: true, Streaming: true},
		},
		Arch{
			ModelType:    "qwen3_moe",
			Name:         "Qwen3 MoE",
			Activation:   PlainSwiGLU,
			Stacked:      true,
			DefaultBits:  4,
			DefaultGroup: 64,
			DefaultQuant: QuantAffine,
			ModelModule:  modulePrefix + "qwen3moe",
			KVCache:      KVStandard,
			Specdec:      SpecdecV7,
			// pkg/model/qwen3moe: parity with transformers on every
			// qwen3_moe fixture, and batched forward steps over
			// per-sequence caches bit-identical to single ones. pkg/scheduler:
			// prefix reuse gives the cold run's tokens on the qwen3_moe fixture.
			Support: Support{Forward: true, Batching: true, PrefixReuse: true, Streaming: true},
		},
	)
	if err != nil {
		// The table above is static; a failure is a programming error
		// caught by the package tests.
		panic(err)
	}
	// Every architecture checks its config.json with the function its
	// loader builds its options on.
	checks := archconfig.Checks()
	for name, a := range r.archs {
		a.CheckConfig = checks[name]
		r.archs[name] = a
	}
	return r
}
