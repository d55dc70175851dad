package gptoss_test

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/model/archs"
	"github.com/maniac-ai/mach/pkg/model/gptoss/gptosstest"
)

// BenchmarkGptOss20BShape measures the engine end to end (mach-generate's
// path: chunked prefill, decoding with the f16 rotating KV cache, greedy
// sampling) on a synthetic checkpoint with gpt-oss-20b's shapes in the
// original checkpoint's form — hidden 2880, 64 query and 8 KV heads of 64
// with biases and sinks, sliding window 128 on alternate layers, YaRN; 32
// MXFP4 experts of width 2880 (interleaved gate/up blocks, computed on as
// stored), top-4; bf16 attention, router, embedding and head; vocabulary
// 201088 — but MACH_BENCH_LAYERS layers (default 4: two sliding, two full)
// so it fits this machine, against the machine's measured limits:
//
//   - copy: memory bandwidth, bytes copied per second by a parallel copy on
//     all cores (each byte counted once), measured again around decoding;
//   - decode: tokens/s after a 64-token prompt, bytes read per token
//     (active weights — attention, router, the top-4 experts, the head, an
//     embedding row — plus the KV cache), the limit bandwidth ÷ bytes per
//     token, and the ratio to it (target ≥ 0.4);
//   - prefill512: prompt tokens/s on a 512-token prompt and the ratio to
//     decode tokens/s;
//   - memory: peak resident memory, file-backed (the mapped weights) and
//     anonymous, and anonymous ÷ (10% of the weights + the KV cache).
//
// One untimed 512-token generation runs first: it maps the weight pages
// and sizes the buffers, so the figures are steady state.
func BenchmarkGptOss20BShape(b *testing.B) {
	layers := 4
	if v := os.Getenv("MACH_BENCH_LAYERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("MACH_BENCH_LAYERS=%q: want a positive number of layers", v)
		}
		layers = n
	}
	dir := b.TempDir()
	shape := gptosstest.GptOss20B(layers)
	weightBytes, err := gptosstest.Write(dir, shape, 1)
	if err != nil {
		b.Fatal(err)
	}
	bw := copyBandwidth()
	runtime.GC()
	debug.FreeOSMemory() // neither the writer's nor the copy's buffers are the engine's memory
	b.Run("copy", func(b *testing.B) {
		b.ReportMetric(bw/1e9, "GB/s")
		b.ReportMetric(0, "ns/op")
	})

	e, err := engine.Load(b.Context(), dir, engine.Options{Loaders: archs.Loaders(), CacheType: kernels.F16})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	info := e.Info()
	prompt := make([]int32, 512)
	for i := range prompt {
		prompt[i] = int32((i*7919 + 13) % shape.Vocab)
	}
	run := func(b *testing.B, p []int32, n int) *engine.Summary {
		var sum *engine.Summary
		err := e.Generate(b.Context(), &engine.Request{PromptTokens: p, MaxTokens: n}, func(t engine.Token) error {
			if t.Final != nil {
				sum = t.Final
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		return sum
	}
	cold := run(b, prompt, 1)
	b.Logf("cold 512-token prefill (weight page faults included): %.2f s", cold.Prefill.Seconds())

	// f16 keys and values read per decoded token at a context of ctx: full
	// layers read every token, sliding layers at most the window.
	kvRead := func(ctx int) float64 {
		per := float64(2 * shape.KVHeads * shape.HeadDim * 2)
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
	const ctxTokens, decodeTokens = 64, 65
	var mu sync.Mutex
	var decodeTPS float64
	b.Run("decode", func(b *testing.B) {
		// The machine may be shared: measure the bandwidth again right
		// before and after decoding and use the mean, so the ratio compares
		// figures taken under the same conditions.
		bwNow := copyBandwidth()
		runtime.GC()
		debug.FreeOSMemory()
		var steps int
		var dur time.Duration
		for b.Loop() {
			s := run(b, prompt[:ctxTokens], decodeTokens)
			steps += s.DecodeSteps
			dur += s.Decode
		}
		bwNow = (bwNow + copyBandwidth()) / 2
		runtime.GC()
		debug.FreeOSMemory() // the copy's buffers are not the engine's memory
		tps := float64(steps) / dur.Seconds()
		perToken := float64(info.ActiveBytes) + kvRead(ctxTokens+decodeTokens/2)
		limit := bwNow / perToken
		mu.Lock()
		decodeTPS = tps
		mu.Unlock()
		b.ReportMetric(tps, "tok/s")
		b.ReportMetric(perToken/1e6, "MB/token")
		b.ReportMetric(limit, "limit_tok/s")
		b.ReportMetric(tps/limit, "ratio")
		b.ReportMetric(bwNow/1e9, "GB/s")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("prefill512", func(b *testing.B) {
		var toks int
		var dur time.Duration
		for b.Loop() {
			s := run(b, prompt, 1)
			toks += len(s.PromptTokens)
			dur += s.Prefill
		}
		tps := float64(toks) / dur.Seconds()
		b.ReportMetric(tps, "tok/s")
		mu.Lock()
		if decodeTPS > 0 {
			b.ReportMetric(tps/decodeTPS, "x_decode")
		}
		mu.Unlock()
		b.ReportMetric(0, "ns/op")
	})
	b.Run("memory", func(b *testing.B) {
		u, ok := e.PeakMemory()
		if !ok {
			b.Skip("resident memory split not measurable on this system")
		}
		kv := float64(2*shape.KVHeads*shape.HeadDim*2) * float64(layers) * float64(len(prompt)+1)
		allowed := 0.1*float64(weightBytes) + kv
		b.ReportMetric(float64(weightBytes)/1e6, "weights_MB")
		b.ReportMetric(float64(u.File)/1e6, "peak_file_MB")
		b.ReportMetric(float64(u.Anon)/1e6, "peak_anon_MB")
		b.ReportMetric(float64(u.Anon)/allowed, "anon_ratio")
		b.ReportMetric(0, "ns/op")
	})
	b.Logf("%d layers, %.2f GB of weights, %.1f MB active per token (%.1f MB of it in experts), %s",
		layers, float64(weightBytes)/1e9, float64(info.ActiveBytes)/1e6, float64(int64(layers*shape.TopK)*shape.ExpertBytes())/1e6, info.Backend)
}

// copyBandwidth copies a buffer much larger than the caches on every core
// at once and returns bytes copied per second (the best of five passes),
// as the engine benchmark measures it.
func copyBandwidth() float64 {
	const size = 512 << 20
	workers := runtime.GOMAXPROCS(0)
	src, dst := make([]byte, size), make([]byte, size)
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
			wg.Go(func() { copy(dst[w*chunk:(w+1)*chunk], src[w*chunk:(w+1)*chunk]) })
		}
		wg.Wait()
		best = max(best, float64(chunk*workers)/time.Since(start).Seconds())
	}
	return best
}
