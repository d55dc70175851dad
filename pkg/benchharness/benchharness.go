// Package benchharness is what the end-to-end benchmarks share: the
// machine's measured memory bandwidth, the MACH_BENCH_LAYERS knob, a
// deterministic prompt, and the engine benchmark (decode, prefill and
// memory against those limits) that mach-generate's path is measured with
// on a synthetic checkpoint of each architecture's real shapes.
package benchharness

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"
)

// CopyBandwidth copies a buffer much larger than the caches on every core
// at once and returns bytes copied per second, each byte counted once (the
// rate data streams through memory; STREAM's convention would count the
// read and the write), the best of five passes. Where the system allows,
// the buffers are mapped and unmapped outside the Go heap, so they never
// count as the measured process's memory; otherwise they are handed back
// to the system before it returns.
func CopyBandwidth() float64 {
	const size = 512 << 20
	mem, free := alloc(2 * size)
	defer free()
	src, dst := mem[:size], mem[size:]
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src) // fault the pages in
	workers := runtime.GOMAXPROCS(0)
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

// heapAlloc is the fallback buffer: on the Go heap, returned to the system
// when freed.
func heapAlloc(n int) ([]byte, func()) {
	return make([]byte, n), func() {
		runtime.GC()
		debug.FreeOSMemory()
	}
}

// ReportCopy reports bw (CopyBandwidth) as the sub-benchmark "copy".
func ReportCopy(b *testing.B, bw float64) {
	b.Run("copy", func(b *testing.B) {
		b.ReportMetric(bw/1e9, "GB/s")
		b.ReportMetric(0, "ns/op")
	})
}

// Layers returns MACH_BENCH_LAYERS, the number of layers a benchmark's
// synthetic checkpoint gets so that it fits the machine, or def when it is
// not set.
func Layers(b testing.TB, def int) int {
	v := os.Getenv("MACH_BENCH_LAYERS")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("MACH_BENCH_LAYERS=%q: want a positive number of layers", v)
	}
	return n
}

// Prompt returns n token ids spread over a vocabulary of vocab, the same
// for every run.
func Prompt(n, vocab int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32((i*7919 + 13) % vocab)
	}
	return p
}
