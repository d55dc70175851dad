package qwen3moe_test

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/qwen3moe"
	"github.com/maniac-ai/mach/pkg/model/qwen3moe/qwen3moetest"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/procmem"
)

// BenchmarkQwen3MoE30BShape measures the engine on a synthetic checkpoint
// with Qwen3-30B-A3B's shapes (hidden 2048, 128 experts, top-8, expert
// width 768, vocabulary 151936, MLX affine 4-bit group 64, routers 8-bit)
// but MACH_BENCH_LAYERS layers (default 4) so it fits in memory, and reports
// against the machine's measured limits:
//
//   - copy: memory bandwidth, as bytes copied per second by a parallel
//     copy on all cores (each byte counted once: the rate at which data
//     streams through memory; STREAM's convention would count the read and
//     the write, doubling it);
//   - decode: tokens/s, bytes read per token (active weights + KV), the
//     bandwidth limit (bandwidth ÷ bytes/token) and the ratio to it
//     (target ≥ 0.4);
//   - prefill512: tokens/s on a 512-token prompt and its ratio to decode
//     tokens/s (target ≥ 4);
//   - peak resident memory while computing, file-backed (the mapped
//     weights) and anonymous (target ≤ 10% of the weights + the KV cache).
func BenchmarkQwen3MoE30BShape(b *testing.B) {
	layers := 4
	if v := os.Getenv("MACH_BENCH_LAYERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("MACH_BENCH_LAYERS=%q: want a positive number of layers", v)
		}
		layers = n
	}
	dir := b.TempDir()
	shape := qwen3moetest.Qwen3_30B_A3B(layers)
	weightBytes, err := qwen3moetest.Write(dir, shape, 1)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	debug.FreeOSMemory()

	bw := measureBandwidth(b)
	runtime.GC()
	debug.FreeOSMemory() // the copy buffers must not count as the engine's memory
	b.Run("copy", func(b *testing.B) {
		b.ReportMetric(bw/1e9, "GB/s")
		b.ReportMetric(0, "ns/op")
	})

	be := cpu.New(cpu.Options{})
	defer be.Close()
	cfg, err := modelconfig.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	m, err := qwen3moe.Load(b.Context(), dir, cfg, be, qwen3moe.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	info := m.Info()
	var peak procmem.Peak
	var mu sync.Mutex
	var decodeTPS float64
	kvPerToken := int64(layers * 2 * shape.KVHeads * shape.HeadDim * 2) // f16 keys and values

	prompt := make([]int32, 512)
	for i := range prompt {
		prompt[i] = int32((i*7919 + 13) % shape.Vocab)
	}
	const ctxTokens, decodeTokens = 64, 32
	b.Run("decode", func(b *testing.B) {
		c, err := m.NewCache(ctxTokens+decodeTokens, kernels.F16)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Release()
		seq := model.Seq{Cache: c, Tokens: prompt[:ctxTokens], Logits: model.LastLogits}
		if _, err := m.Forward(b.Context(), &model.Batch{Seqs: []model.Seq{seq}}); err != nil {
			b.Fatal(err)
		}
		n := 0
		for b.Loop() {
			if err := c.Truncate(ctxTokens); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < decodeTokens; i++ {
				seq.Tokens = prompt[ctxTokens+i : ctxTokens+i+1]
				if _, err := m.Forward(b.Context(), &model.Batch{Seqs: []model.Seq{seq}}); err != nil {
					b.Fatal(err)
				}
				n++
			}
			peak.Sample()
		}
		tps := float64(n) / b.Elapsed().Seconds()
		perToken := float64(info.ActiveBytes) + float64(kvPerToken)*(ctxTokens+decodeTokens/2)
		limit := bw / perToken
		mu.Lock()
		decodeTPS = tps
		mu.Unlock()
		b.ReportMetric(tps, "tok/s")
		b.ReportMetric(perToken/1e6, "MB/token")
		b.ReportMetric(limit, "limit_tok/s")
		b.ReportMetric(tps/limit, "ratio")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("prefill512", func(b *testing.B) {
		c, err := m.NewCache(len(prompt), kernels.F16)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Release()
		n := 0
		for b.Loop() {
			if err := c.Truncate(0); err != nil {
				b.Fatal(err)
			}
			seq := model.Seq{Cache: c, Tokens: prompt, Logits: model.LastLogits}
			if _, err := m.Forward(b.Context(), &model.Batch{Seqs: []model.Seq{seq}}); err != nil {
				b.Fatal(err)
			}
			n += len(prompt)
			peak.Sample()
		}
		tps := float64(n) / b.Elapsed().Seconds()
		b.ReportMetric(tps, "tok/s")
		mu.Lock()
		if decodeTPS > 0 {
			b.ReportMetric(tps/decodeTPS, "x_decode")
		}
		mu.Unlock()
		b.ReportMetric(0, "ns/op")
	})
	b.Run("memory", func(b *testing.B) {
		u, ok := peak.Max()
		if !ok {
			b.Skip("resident memory split not measurable here")
		}
		kv := float64(kvPerToken) * float64(len(prompt)+ctxTokens+decodeTokens)
		allowed := 0.1*float64(weightBytes) + kv
		b.ReportMetric(float64(weightBytes)/1e6, "weights_MB")
		b.ReportMetric(float64(u.File)/1e6, "peak_file_MB")
		b.ReportMetric(float64(u.Anon)/1e6, "peak_anon_MB")
		b.ReportMetric(float64(u.Anon)/allowed, "anon_ratio")
		b.ReportMetric(0, "ns/op")
	})
	b.Logf("%d layers, %.2f GB of weights, %d active bytes per token, backend %s, %d threads",
		layers, float64(weightBytes)/1e9, info.ActiveBytes, be.Name(), be.Threads())
}

// measureBandwidth copies a buffer much larger than the caches on every
// core at once and returns bytes copied per second (the best of several
// passes).
func measureBandwidth(b *testing.B) float64 {
	const size = 512 << 20
	workers := runtime.GOMAXPROCS(0)
	src := make([]byte, size)
	dst := make([]byte, size)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src) // fault the pages in
	chunk := size / workers
	best := 0.0
	for pass := 0; pass < 5; pass++ {
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < workers; w++ {
			wg.Go(func() {
				copy(dst[w*chunk:(w+1)*chunk], src[w*chunk:(w+1)*chunk])
			})
		}
		wg.Wait()
		if bw := float64(chunk*workers) / time.Since(start).Seconds(); bw > best {
			best = bw
		}
	}
	runtime.KeepAlive(src)
	runtime.KeepAlive(dst)
	return best
}
