package cpu_test

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/quant"
)

// copyBandwidth returns bytes copied per second by a parallel copy much
// larger than the caches (each byte counted once): the limit memory-bound
// kernels are measured against.
func copyBandwidth() float64 {
	const size = 256 << 20
	src, dst := make([]byte, size), make([]byte, size)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src)
	workers := runtime.GOMAXPROCS(0)
	chunk := size / workers
	best := 0.0
	for pass := 0; pass < 4; pass++ {
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < workers; w++ {
			wg.Go(func() { copy(dst[w*chunk:(w+1)*chunk], src[w*chunk:(w+1)*chunk]) })
		}
		wg.Wait()
		best = max(best, float64(size)/time.Since(start).Seconds())
	}
	return best
}

func randomAffine(rows, cols, bits, group int) *quant.Matrix {
	r := rand.New(rand.NewPCG(1, 2))
	groups := cols / group
	m := &quant.Matrix{Format: quant.Format{Kind: quant.Affine, Bits: bits, GroupSize: group, Scale: quant.ScaleBF16},
		Rows: rows, Cols: cols, Data: make([]byte, rows*cols*bits/8)}
	for i := range m.Data {
		m.Data[i] = byte(r.Uint32())
	}
	s := make([]float32, rows*groups)
	for i := range s {
		s[i] = 0.01 * r.Float32()
	}
	m.Scales, m.Biases = quant.BF16Bytes(s), quant.BF16Bytes(s)
	return m
}

// BenchmarkMatMul reports the throughput of the 4-bit MLX affine product
// at decode (1 row) and prefill-like (32 rows) sizes, as bytes of weights
// streamed per second and as a ratio to the copy bandwidth.
func BenchmarkMatMul(b *testing.B) {
	bw := copyBandwidth()
	be := cpu.New(cpu.Options{})
	defer be.Close()
	const rows, cols = 32768, 2048 // 36 MB of weights: well beyond the caches
	m := randomAffine(rows, cols, 4, 64)
	w, err := be.Bind(m)
	if err != nil {
		b.Fatal(err)
	}
	benchMatMul(b, be, m, w, bw, "", 1, 3, 32)
}

// benchMatMul runs the sub-benchmarks prefix/rows=n: the product of n
// rows by w (m bound on be), reported as bytes of weights streamed per
// second, its ratio to the copy bandwidth bw, and GFLOP/s.
func benchMatMul(b *testing.B, be *cpu.Backend, m *quant.Matrix, w kernels.Weight, bw float64, prefix string, ns ...int) {
	if prefix != "" {
		prefix += "/"
	}
	for _, n := range ns {
		b.Run(prefix+"rows="+itoa(n), func(b *testing.B) {
			x, _ := be.Alloc(kernels.F32, n, m.Cols)
			y, _ := be.Alloc(kernels.F32, n, m.Rows)
			xs := make([]float32, n*m.Cols)
			for i := range xs {
				xs[i] = float32(i%7) - 3
			}
			_ = be.Write(x, xs)
			for b.Loop() {
				be.MatMul(y, x, w)
			}
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(m.Bytes())/sec/1e9, "weight_GB/s")
			b.ReportMetric(float64(m.Bytes())/sec/bw, "ratio_to_copy_bw")
			b.ReportMetric(2*float64(m.Rows*m.Cols*n)/sec/1e9, "GFLOP/s")
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
