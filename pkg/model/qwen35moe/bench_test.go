package qwen35moe_test

import (
	"math"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/benchharness"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/maniac-ai/mach/pkg/model/qwen35moe"
	"github.com/maniac-ai/mach/pkg/model/qwen35moe/qwen35moetest"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/procmem"
	"github.com/stretchr/testify/require"
)

// The synthetic writer produces checkpoints the model loads and runs.
func TestSyntheticCheckpoint(t *testing.T) {
	s := qwen35moetest.Shape{Hidden: 64, Layers: 4, Heads: 4, KVHeads: 2, HeadDim: 32,
		LinearKeyHeads: 2, LinearValueHeads: 4, LinearKeyDim: 16, LinearValueDim: 16, ConvKernel: 4,
		Experts: 8, TopK: 2, Width: 64, SharedWidth: 64, Vocab: 256, Bits: 4, Group: 64, GateBits: 8}
	dir := t.TempDir()
	_, err := qwen35moetest.Write(dir, s, 7)
	require.NoError(t, err)
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	m := loadDir(t, dir, b)
	require.True(t, m.Layout().ShiftedNorms)
	seq := newSeq(t, m, kernels.F16)
	seq.Tokens, seq.Logits = []int32{1, 2, 3, 4, 5}, model.AllLogits
	out := modeltest.Forward(t, m, seq)
	for _, v := range out.Logits[0] {
		require.False(t, math.IsNaN(float64(v)) || math.IsInf(float64(v), 0))
	}
}

// BenchmarkQwen36Shape measures the engine on a synthetic checkpoint with
// Qwen3.6-35B-A3B's per-layer shapes (hidden 2048; Gated DeltaNet with 16
// key and 32 value heads of 128; full attention with 16 query heads, 2 KV
// heads of 256 and an output gate; 256 experts of width 512, top-8, a
// shared expert of 512; vocabulary 248320; MLX affine 4-bit group 64,
// router and shared-expert gate 8-bit) and its 3:1 linear/full layer
// pattern, but MACH_BENCH_LAYERS layers (default 4: three Gated DeltaNet,
// one full attention) so it fits in memory. It reports, against the
// machine's measured limits:
//
//   - copy: memory bandwidth (benchharness.CopyBandwidth, as the engine's
//     benchmark measures it);
//   - decode: tokens/s, bytes moved per token (active weights, the f16 KV
//     of the full-attention layers, and each Gated DeltaNet layer's f32
//     recurrent state read and written), the bandwidth limit (bandwidth,
//     re-measured around the run, ÷ bytes per token) and the ratio to it
//     (target ≥ 0.4);
//   - prefill512 and prefill4096: tokens/s of a prompt prefilled in one
//     step (chunked delta rule), and for 4096 the cost per token relative
//     to 512 (target ≤ 1.5);
//   - for decode and prefill also the process CPU time per token, and the
//     4096/512 ratio of it: on a shared machine the wall clock measures
//     the other processes too, the CPU time only the work;
//   - peak resident memory while computing, file-backed (the mapped
//     weights) and anonymous.
//
// One untimed 512-token prefill runs first, so the figures are steady
// state.
func BenchmarkQwen36Shape(b *testing.B) {
	layers := benchharness.Layers(b, 4)
	dir := b.TempDir()
	shape := qwen35moetest.Qwen36_35B_A3B(layers)
	weightBytes, err := qwen35moetest.Write(dir, shape, 1)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	debug.FreeOSMemory() // the writer's buffers are not the model's memory
	benchharness.ReportCopy(b, benchharness.CopyBandwidth())

	be := cpu.New(cpu.Options{})
	defer be.Close()
	cfg, err := modelconfig.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	m, err := qwen35moe.Load(b.Context(), dir, cfg, be, qwen35moe.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	info := m.Info()
	var full, linear int
	for i := 0; i < layers; i++ {
		if shape.Linear(i) {
			linear++
		} else {
			full++
		}
	}
	kvPerToken := int64(full * 2 * shape.KVHeads * shape.HeadDim * 2) // f16 keys and values
	stateBytes := int64(linear * shape.LinearValueHeads * shape.LinearKeyDim * shape.LinearValueDim * 4)
	var peak procmem.Peak
	var mu sync.Mutex
	perToken, perTokenCPU := map[int]float64{}, map[int]float64{}

	prompt := benchharness.Prompt(4096, shape.Vocab)
	// One untimed 512-token prefill maps the weight pages (a process pays
	// those faults once, on its first prompt) and sizes the buffers, so the
	// figures below are steady state.
	{
		c, err := m.NewCache(512, kernels.F16)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := m.Forward(b.Context(), &model.Batch{Seqs: []model.Seq{{Cache: c, Tokens: prompt[:512], Logits: model.LastLogits}}}); err != nil {
			b.Fatal(err)
		}
		b.Logf("cold 512-token prefill (weight page faults included): %.2f s", time.Since(start).Seconds())
		c.Release()
	}
	const ctxTokens, decodeTokens = 64, 32
	b.Run("decode", func(b *testing.B) {
		c, err := m.NewCache(ctxTokens+decodeTokens, kernels.F16)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Release()
		hc := c.(interface{ SnapshotAt(int) error })
		seq := model.Seq{Cache: c, Tokens: prompt[:ctxTokens], Logits: model.LastLogits}
		if _, err := m.Forward(b.Context(), &model.Batch{Seqs: []model.Seq{seq}}); err != nil {
			b.Fatal(err)
		}
		if err := hc.SnapshotAt(ctxTokens); err != nil {
			b.Fatal(err)
		}
		n := 0
		bwNow := benchharness.CopyBandwidth()
		cpu0, cpuOK := processCPU()
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
		cpu1, cpuOK1 := processCPU()
		// The machine may be shared: the mean of the bandwidth right before
		// and after decoding compares figures taken under the same load.
		bwNow = (bwNow + benchharness.CopyBandwidth()) / 2
		moved := float64(info.ActiveBytes) + float64(kvPerToken)*(ctxTokens+decodeTokens/2) + 2*float64(stateBytes)
		limit := bwNow / moved
		b.ReportMetric(tps, "tok/s")
		b.ReportMetric(moved/1e6, "MB/token")
		b.ReportMetric(limit, "limit_tok/s")
		b.ReportMetric(tps/limit, "ratio")
		b.ReportMetric(bwNow/1e9, "GB/s")
		if cpuOK && cpuOK1 {
			b.ReportMetric((cpu1-cpu0)/float64(n)*1e3, "cpu_ms/token")
		}
		b.ReportMetric(0, "ns/op")
	})
	for _, n := range []int{512, 4096} {
		b.Run("prefill"+strconv.Itoa(n), func(b *testing.B) {
			c, err := m.NewCache(n, kernels.F16)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Release()
			tokens := 0
			cpu0, cpuOK := processCPU()
			for b.Loop() {
				if err := c.Truncate(0); err != nil {
					b.Fatal(err)
				}
				seq := model.Seq{Cache: c, Tokens: prompt[:n], Logits: model.LastLogits}
				if _, err := m.Forward(b.Context(), &model.Batch{Seqs: []model.Seq{seq}}); err != nil {
					b.Fatal(err)
				}
				tokens += n
				peak.Sample()
			}
			sec := b.Elapsed().Seconds() / float64(tokens)
			b.ReportMetric(1/sec, "tok/s")
			cpuSec := 0.0
			if cpu1, ok := processCPU(); ok && cpuOK {
				cpuSec = (cpu1 - cpu0) / float64(tokens)
				b.ReportMetric(cpuSec*1e3, "cpu_ms/token")
			}
			mu.Lock()
			perToken[n], perTokenCPU[n] = sec, cpuSec
			if n == 4096 && perToken[512] > 0 {
				b.ReportMetric(sec/perToken[512], "x_cost_per_token_vs_512")
				if perTokenCPU[512] > 0 && cpuSec > 0 {
					b.ReportMetric(cpuSec/perTokenCPU[512], "x_cpu_per_token_vs_512")
				}
			}
			mu.Unlock()
			b.ReportMetric(0, "ns/op")
		})
	}
	b.Run("memory", func(b *testing.B) {
		u, ok := peak.Max()
		if !ok {
			b.Skip("resident memory split not measurable here")
		}
		b.ReportMetric(float64(weightBytes)/1e6, "weights_MB")
		b.ReportMetric(float64(u.File)/1e6, "peak_file_MB")
		b.ReportMetric(float64(u.Anon)/1e6, "peak_anon_MB")
		b.ReportMetric(0, "ns/op")
	})
	b.Logf("%d layers (%d Gated DeltaNet, %d full attention), %.2f GB of weights, %d active bytes per token, backend %s, %d threads",
		layers, linear, full, float64(weightBytes)/1e9, info.ActiveBytes, be.Name(), be.Threads())
}
