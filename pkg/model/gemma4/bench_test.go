package gemma4_test

import (
	"testing"

	"github.com/maniac-ai/mach/pkg/benchharness"
	"github.com/maniac-ai/mach/pkg/model/gemma4/gemma4test"
)

// BenchmarkGemma4_26B_A4BShape measures the engine end to end
// (benchharness.Engine: copy bandwidth, decode with the f16 rotating KV
// cache, prefill512 and memory against the machine's measured limits) on a
// synthetic checkpoint with Gemma-4-26B-A4B's per-layer shapes — hidden
// 2816, 16 heads; sliding layers 8 KV heads × 256 over a window of 1024;
// full layers 2 KV heads × 512 with values from the key projection and
// proportional RoPE; the dense GeGLU MLP of 2112 beside 128 experts of
// width 704, top-8; vocabulary 262144 with the tied head; MLX affine 4-bit
// group 64 with 8-bit routers — but MACH_BENCH_LAYERS layers (default 6:
// five sliding, one full) so it fits this machine. A decoded token reads
// the active weights (attention, the dense MLP, router, the top-8 experts,
// the tied head, an embedding row) and the KV cache; target decode ratio
// ≥ 0.4.
func BenchmarkGemma4_26B_A4BShape(b *testing.B) {
	layers := benchharness.Layers(b, 6)
	dir := b.TempDir()
	shape := gemma4test.Gemma4_26B_A4B(layers)
	weightBytes, err := gemma4test.Write(dir, shape, 1)
	if err != nil {
		b.Fatal(err)
	}
	// f16 keys and values; the contexts here are shorter than the window,
	// so every layer reads every token.
	kvPerToken := float64(shape.KVBytesPerToken(2))
	info := benchharness.Engine{Dir: dir, WeightBytes: weightBytes, Vocab: shape.Vocab,
		KVRead: func(ctx int) float64 { return kvPerToken * float64(ctx) },
		KVHeld: func(n int) float64 { return kvPerToken * float64(n) },
	}.Run(b)
	b.Logf("%d layers, %.2f GB of weights, %.1f MB active per token, %s", layers, float64(weightBytes)/1e9, float64(info.ActiveBytes)/1e6, info.Backend)
}
