package cpu_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
)

// BenchmarkGatedDeltaNet runs the delta rule at Qwen3.6-35B-A3B's shape
// (16 key heads, 32 value heads, 128×128 state per head) for a decode step
// and for 512-token prefill steps in the recurrent and chunked forms, and
// reports the time per token.
func BenchmarkGatedDeltaNet(b *testing.B) {
	const hk, hv, d = 16, 32, 128
	be := cpu.New(cpu.Options{})
	defer be.Close()
	r := rand.New(rand.NewPCG(1, 2))
	mk := func(rows, cols int) kernels.Tensor {
		t, err := be.Alloc(kernels.F32, rows, cols)
		if err != nil {
			b.Fatal(err)
		}
		v := make([]float32, rows*cols)
		for i := range v {
			v[i] = float32(r.NormFloat64() * 0.5)
		}
		if err := be.Write(t, v); err != nil {
			b.Fatal(err)
		}
		return t
	}
	state := mk(hv*d, d)
	for _, tc := range []struct {
		t, chunk int
	}{{1, 0}, {512, 0}, {512, 64}} {
		b.Run(fmt.Sprintf("T%d_chunk%d", tc.t, tc.chunk), func(b *testing.B) {
			q, k, v := mk(tc.t, hk*d), mk(tc.t, hk*d), mk(tc.t, hv*d)
			a, bb := mk(tc.t, hv), mk(tc.t, hv)
			out := mk(tc.t, hv*d)
			g := kernels.GatedDelta{KHeads: hk, VHeads: hv, KDim: d, VDim: d, ALog: mk(1, hv), DtBias: mk(1, hv), L2Norm: true, Chunk: tc.chunk}
			n := 0
			for b.Loop() {
				be.GatedDeltaNet(out, q, k, v, a, bb, state, state, g)
				n += tc.t
			}
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/token")
		})
	}
}
