package cpu_test

import (
	"math/rand/v2"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/quant"
)

// BenchmarkMatMulMXFP4 reports the throughput of MXFP4 (gpt-oss experts)
// and bf16 (gpt-oss attention and head) products at gpt-oss's width 2880,
// at decode (1 row) and prefill-like (32 rows) sizes, as bytes of weights
// streamed per second and as a ratio to the copy bandwidth.
func BenchmarkMatMulMXFP4(b *testing.B) {
	bw := copyBandwidth()
	be := cpu.New(cpu.Options{})
	defer be.Close()
	const cols = 2880
	r := rand.New(rand.NewPCG(3, 4))
	mx := &quant.Matrix{Format: quant.Format{Kind: quant.MXFP4, Bits: 4, GroupSize: 32, Scale: quant.ScaleE8M0},
		Rows: 32768, Cols: cols, Data: make([]byte, 32768*cols/2), Scales: make([]byte, 32768*cols/32)}
	for i := range mx.Data {
		mx.Data[i] = byte(r.Uint32())
	}
	for i := range mx.Scales {
		mx.Scales[i] = byte(120 + r.IntN(8))
	}
	bf := &quant.Matrix{Format: quant.Format{Kind: quant.BF16}, Rows: 16384, Cols: cols, Data: make([]byte, 16384*cols*2)}
	for i := 0; i < len(bf.Data); i += 2 {
		bf.Data[i], bf.Data[i+1] = byte(r.Uint32()), 0x3c
	}
	for _, m := range []*quant.Matrix{mx, bf} {
		w, err := be.Bind(m)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{1, 32} {
			b.Run(m.Format.String()+"/rows="+itoa(n), func(b *testing.B) {
				x, _ := be.Alloc(kernels.F32, n, cols)
				y, _ := be.Alloc(kernels.F32, n, m.Rows)
				xs := make([]float32, n*cols)
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
				b.ReportMetric(2*float64(m.Rows*cols*n)/sec/1e9, "GFLOP/s")
			})
		}
	}
}
