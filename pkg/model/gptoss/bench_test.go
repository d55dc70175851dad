package gptoss_test

import (
	"testing"

	"github.com/maniac-ai/mach/pkg/benchharness"
	"github.com/maniac-ai/mach/pkg/model/gptoss/gptosstest"
)

// BenchmarkGptOss20BShape measures the engine end to end
// (benchharness.Engine: copy bandwidth, decode with the f16 rotating KV
// cache, prefill512 and memory against the machine's measured limits) on a
// synthetic checkpoint with gpt-oss-20b's shapes in the original
// checkpoint's form — hidden 2880, 64 query and 8 KV heads of 64 with
// biases and sinks, sliding window 128 on alternate layers, YaRN; 32 MXFP4
// experts of width 2880 (interleaved gate/up blocks, computed on as
// stored), top-4; bf16 attention, router, embedding and head; vocabulary
// 201088 — but MACH_BENCH_LAYERS layers (default 4: two sliding, two full)
// so it fits this machine. A decoded token reads the active weights
// (attention, router, the top-4 experts, the head, an embedding row) and
// the KV cache; target decode ratio ≥ 0.4.
func BenchmarkGptOss20BShape(b *testing.B) {
	layers := benchharness.Layers(b, 4)
	dir := b.TempDir()
	shape := gptosstest.GptOss20B(layers)
	weightBytes, err := gptosstest.Write(dir, shape, 1)
	if err != nil {
		b.Fatal(err)
	}
	// f16 keys and values read per decoded token at a context of ctx: full
	// layers read every token, sliding layers at most the window. The
	// memory allowance counts every layer's keys and values for every
	// token, an upper bound.
	per := float64(2 * shape.KVHeads * shape.HeadDim * 2)
	kvRead := func(ctx int) float64 {
		n := 0.0
		for l := 0; l < layers; l++ {
			if l%2 == 0 {
				n += per * float64(min(ctx, shape.Window))
			} else {
				n += per * float64(ctx)
			}
		}
		return n
	}
	info := benchharness.Engine{Dir: dir, WeightBytes: weightBytes, Vocab: shape.Vocab,
		KVRead: kvRead,
		KVHeld: func(n int) float64 { return per * float64(layers) * float64(n) },
	}.Run(b)
	b.Logf("%d layers, %.2f GB of weights, %.1f MB active per token (%.1f MB of it in experts), %s",
		layers, float64(weightBytes)/1e9, float64(info.ActiveBytes)/1e6, float64(int64(layers*shape.TopK)*shape.ExpertBytes())/1e6, info.Backend)
}
