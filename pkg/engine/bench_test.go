package engine_test

import (
	"testing"

	"github.com/maniac-ai/mach/pkg/benchharness"
	"github.com/maniac-ai/mach/pkg/model/qwen3moe/qwen3moetest"
)

// BenchmarkQwen3MoE30BShape measures the engine end to end
// (benchharness.Engine: copy bandwidth, decode, prefill512 and memory
// against the machine's measured limits) on a synthetic checkpoint with
// Qwen3-30B-A3B's shapes — hidden 2048, 128 experts, top-8, expert width
// 768, vocabulary 151936, MLX affine 4-bit group 64 with 8-bit routers —
// but MACH_BENCH_LAYERS layers (default 4) so it fits this machine. A
// decoded token reads the active weights (attention, router, the top-8
// experts, the head, an embedding row) and the KV cache. Targets: decode
// ratio ≥ 0.4, prefill512 ≥ 4× decode, anon_ratio ≤ 1.
func BenchmarkQwen3MoE30BShape(b *testing.B) {
	layers := benchharness.Layers(b, 4)
	dir := b.TempDir()
	shape := qwen3moetest.Qwen3_30B_A3B(layers)
	weightBytes, err := qwen3moetest.Write(dir, shape, 1)
	if err != nil {
		b.Fatal(err)
	}
	kvPerToken := float64(layers * 2 * shape.KVHeads * shape.HeadDim * 2) // f16 keys and values
	info := benchharness.Engine{Dir: dir, WeightBytes: weightBytes, Vocab: shape.Vocab,
		KVRead: func(ctx int) float64 { return kvPerToken * float64(ctx) },
		KVHeld: func(n int) float64 { return kvPerToken * float64(n) },
	}.Run(b)
	b.Logf("%d layers, %.2f GB of weights, %.1f MB active per token, %s", layers, float64(weightBytes)/1e9, float64(info.ActiveBytes)/1e6, info.Backend)
}
