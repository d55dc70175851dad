package cpu_test

import (
	"math/rand/v2"
	"testing"

	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/quant"
)

// BenchmarkMatMulFP8 reports the throughput of FP8 e4m3 products with
// 128×128 tile scales (DeepSeek-V4's attention and shared experts) at
// V4-Flash's wo_b shape (4096 × 8192), at decode (1 row) and prefill-like
// (32 rows) sizes, as bytes of weights streamed per second and as a ratio to
// the copy bandwidth.
func BenchmarkMatMulFP8(b *testing.B) {
	bw := copyBandwidth()
	be := cpu.New(cpu.Options{})
	defer be.Close()
	const rows, cols = 4096, 8192
	r := rand.New(rand.NewPCG(5, 6))
	codes := make([]byte, rows*cols)
	for i := range codes {
		codes[i] = byte(r.Uint32()) &^ 0x40 // finite codes, moderate exponents
	}
	scales := make([]byte, (rows/128)*(cols/128))
	for i := range scales {
		scales[i] = byte(118 + r.IntN(6))
	}
	m, err := quant.FromBlockScaled(codes, rows, cols, scales, quant.ScaleE8M0, 128, 128)
	if err != nil {
		b.Fatal(err)
	}
	w, err := be.Bind(m)
	if err != nil {
		b.Fatal(err)
	}
	benchMatMul(b, be, m, w, bw, m.Format.String(), 1, 32)
}
