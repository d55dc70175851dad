package cpu_test

import (
	"math/rand/v2"
	"testing"

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
		benchMatMul(b, be, m, w, bw, m.Format.String(), 1, 32)
	}
}
