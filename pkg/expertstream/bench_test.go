package expertstream_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/expertstream"
	"github.com/maniac-ai/mach/pkg/expertstream/streamtest"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/qwen3moe"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/moe"
	"github.com/maniac-ai/mach/pkg/procmem"
	"github.com/maniac-ai/mach/pkg/sidecar/export"
	"github.com/maniac-ai/mach/pkg/tokenizer"
	"github.com/stretchr/testify/require"
)

// benchSize picks the benchmark's model: MACH_BENCH_STREAMING=full (make
// bench-streaming) is a 2 GB expert sidecar streamed through a cache of a
// quarter of it; anything else is a small model that runs in seconds
// under make bench.
type benchSize struct {
	shape         streamtest.Shape
	warm, decode  int
	cacheFraction float64
	bandwidthFor  time.Duration
}

func benchConfig() benchSize {
	if os.Getenv("MACH_BENCH_STREAMING") == "full" {
		return benchSize{
			shape: streamtest.Shape{Hidden: 1024, Layers: 12, Heads: 8, KVHeads: 2, HeadDim: 128,
				Experts: 128, TopK: 8, Width: 768, Vocab: 8192, Bits: 4, Group: 64},
			warm: 64, decode: 256, cacheFraction: 1 / 4.25, bandwidthFor: 4 * time.Second,
		}
	}
	return benchSize{
		shape: streamtest.Shape{Hidden: 256, Layers: 4, Heads: 4, KVHeads: 2, HeadDim: 64,
			Experts: 32, TopK: 4, Width: 128, Vocab: 2048, Bits: 4, Group: 64},
		warm: 16, decode: 48, cacheFraction: 1 / 4.25, bandwidthFor: 300 * time.Millisecond,
	}
}

// run is one decoding measurement.
type run struct {
	name        string
	tokensPerS  float64
	stats       expertstream.Stats // over the timed steps (streaming only)
	trace       *expertstream.Trace
	anon, file  int64 // resident memory after the run
	haveMem     bool
	decodeSteps int
}

// decode feeds warm steps, then times n one-token steps (each computing
// the last position's logits, as decoding does) over tokens.
func decode(b *testing.B, m model.Model, tokens []int32, warm int, store *expertstream.Store) run {
	b.Helper()
	c, err := m.NewCache(len(tokens), kernels.F16)
	require.NoError(b, err)
	defer c.Release()
	step := func(t int32) {
		_, err := m.Forward(context.Background(), &model.Batch{Seqs: []model.Seq{{Tokens: []int32{t}, Cache: c, Logits: model.LastLogits}}})
		require.NoError(b, err)
	}
	for _, t := range tokens[:warm] {
		step(t)
	}
	var st0 expertstream.Stats
	if store != nil {
		st0 = store.Stats()
	}
	t0 := time.Now()
	for _, t := range tokens[warm:] {
		step(t)
	}
	el := time.Since(t0)
	r := run{tokensPerS: float64(len(tokens)-warm) / el.Seconds(), decodeSteps: len(tokens) - warm}
	if store != nil {
		r.stats = store.Stats().Sub(st0)
	}
	if u, err := procmem.Read(); err == nil {
		r.anon, r.file, r.haveMem = u.Anon, u.File, true
	}
	return r
}

func load(b *testing.B, bk kernels.Backend, dir string, store moe.Store) model.Model {
	b.Helper()
	cfg, err := modelconfig.Load(dir)
	require.NoError(b, err)
	m, err := qwen3moe.Load(context.Background(), dir, cfg, bk, qwen3moe.LoadOptions{Store: store})
	require.NoError(b, err)
	return m
}

// BenchmarkStreaming is make bench-streaming: a synthetic qwen3_moe
// checkpoint (engine layout, MLX 4-bit experts, routing with skewed
// popularity, topic runs and correlated layers; see streamtest) whose
// expert sidecar is over 4× the cache budget, decoded resident and
// streamed with direct I/O. It reports the disk's read bandwidth measured
// the same way the store reads, bytes read per token, decode tokens/s and
// their ratio to the I/O limit (bandwidth ÷ bytes read per token), the hit
// rates of the per-layer LRU baseline and of the default policy (live, and
// replayed over the same routing trace with every policy), and, for a real
// routing trace, the hit rates on the default model reading README.md.
func BenchmarkStreaming(b *testing.B) {
	cfg := benchConfig()
	s := cfg.shape
	routing := streamtest.DefaultRouting()
	root := os.Getenv("MACH_BENCH_DIR")
	if root == "" {
		root = b.TempDir()
	} else {
		var err error
		root, err = os.MkdirTemp(root, "mach-bench-streaming-")
		require.NoError(b, err)
		defer os.RemoveAll(root)
	}
	ckpt := filepath.Join(root, "ckpt")
	require.NoError(b, os.MkdirAll(ckpt, 0o755))
	t0 := time.Now()
	require.NoError(b, streamtest.Write(ckpt, s, routing, 1))
	writeTime := time.Since(t0)
	t0 = time.Now()
	res, err := export.Run(context.Background(), export.Options{Checkpoint: ckpt})
	require.NoError(b, err)
	exportTime := time.Since(t0)
	sc := res.Dir
	expertBytes := res.Bytes
	budget := int64(float64(expertBytes) * cfg.cacheFraction)
	quiet := slog.New(slog.DiscardHandler)
	tokens := streamtest.Tokens(s, routing, cfg.warm+cfg.decode, 2)
	bk := cpu.New(cpu.Options{})
	defer bk.Close()

	var bw expertstream.Bandwidth
	var resident, baseline, adaptive, hinted run
	var hintPrecision float64
	for b.Loop() {
		bw, err = expertstream.MeasureReadBandwidth(context.Background(), sc, cfg.bandwidthFor, expertstream.DefaultReaders, false)
		require.NoError(b, err)

		m := load(b, bk, ckpt, nil)
		resident = decode(b, m, tokens, cfg.warm, nil)
		resident.name = "resident (experts mapped from the page cache)"
		require.NoError(b, m.Close())

		streamed := func(p expertstream.Policy, hints bool) run {
			store, err := expertstream.Open(sc, bk, expertstream.Options{CacheBytes: budget, Policy: p, NoHints: !hints, Log: quiet, Hidden: s.Hidden, Width: s.Width})
			require.NoError(b, err)
			var layers []int
			for l := 0; l < s.Layers; l++ {
				layers = append(layers, l)
			}
			rec := expertstream.NewRecorder(store, layers)
			m := load(b, bk, ckpt, rec)
			r := decode(b, m, tokens, cfg.warm, store)
			r.trace = rec.Trace()
			if hints {
				hintPrecision, _ = rec.HintPrecision()
			}
			require.NoError(b, m.Close())
			return r
		}
		// Each configuration twice, in the order A B C C B A, so that
		// drift of the shared disk or of other load favours none.
		b1 := streamed(expertstream.LayerLRU, false)
		a1 := streamed(expertstream.Adaptive, false)
		h1 := streamed(expertstream.Adaptive, true)
		h2 := streamed(expertstream.Adaptive, true)
		a2 := streamed(expertstream.Adaptive, false)
		b2 := streamed(expertstream.LayerLRU, false)
		baseline, adaptive, hinted = merge(b1, b2), merge(a1, a2), merge(h1, h2)
		baseline.name = "streamed, layer-lru, no early routing (baseline)"
		adaptive.name = "streamed, adaptive, no early routing"
		hinted.name = "streamed, adaptive + early routing (default)"
	}

	slots := int(budget / (expertBytes / int64(s.Layers*s.Experts)))
	ioLimit := func(r run) float64 { return bw.BytesPerSecond / r.stats.BytesPerStep() }
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "\nexpert streaming benchmark (%s)\n", strings.TrimSpace(sizeName()))
	fmt.Fprintf(w, "model:\tqwen3_moe synthetic, %d layers × %d experts (top %d), hidden %d, expert width %d, MLX affine %d-bit\n", s.Layers, s.Experts, s.TopK, s.Hidden, s.Width, s.Bits)
	fmt.Fprintf(w, "sidecar:\t%.2f GB of experts (%.2f MB each), cache %.2f GB = %d slots (experts = %.2f× cache); written in %.1f s, exported in %.1f s\n",
		float64(expertBytes)/1e9, float64(expertBytes)/float64(s.Layers*s.Experts)/1e6, float64(budget)/1e9, slots, float64(expertBytes)/float64(budget), writeTime.Seconds(), exportTime.Seconds())
	fmt.Fprintf(w, "disk:\t%.0f MB/s (%d reads of %.2f MB, %d at once, mean %.1f ms, direct I/O %v)\n",
		bw.BytesPerSecond/1e6, bw.Reads, float64(bw.Bytes)/float64(max(bw.Reads, 1))/1e6, expertstream.DefaultReaders, ms(bw.MeanLatency), bw.DirectIO)
	fmt.Fprintf(w, "decode:\t%d tokens after %d warm-up tokens; each streamed configuration runs twice, in the order A B C C B A, figures over both\n\n", cfg.decode, cfg.warm)
	fmt.Fprintln(w, "run\ttok/s\thit rate\tMB read/token\tI/O limit tok/s\tof I/O limit\tstall ms/token\tread ms\tanon RSS GB\tfile RSS GB")
	mem := func(r run) string {
		if !r.haveMem {
			return "n/a\tn/a"
		}
		return fmt.Sprintf("%.2f\t%.2f", float64(r.anon)/1e9, float64(r.file)/1e9)
	}
	fmt.Fprintf(w, "%s\t%.2f\t-\t-\t-\t-\t-\t-\t%s\n", resident.name, resident.tokensPerS, mem(resident))
	for _, r := range []run{baseline, adaptive, hinted} {
		st := r.stats
		fmt.Fprintf(w, "%s\t%.2f\t%.1f%%\t%.1f\t%.2f\t%.0f%%\t%.1f\t%.2f\t%s\n", r.name, r.tokensPerS, 100*st.HitRate(), st.BytesPerStep()/1e6,
			ioLimit(r), 100*r.tokensPerS/ioLimit(r), ms(st.StallPerStep()), ms(st.MeanReadLatency()), mem(r))
	}
	fmt.Fprintf(w, "\nearly routing: %.0f%% of the hinted experts were demanded by their layer (%d hinted reads, %d of them used before eviction)\n",
		100*hintPrecision, hinted.stats.SpecReads, hinted.stats.SpecHits)
	fmt.Fprintf(w, "\nreplayed hit rates on the adaptive run's routing trace (%d steps, %d slots, instant reads):\n", adaptive.trace.Steps(), slots)
	sims := simulateAll(b, adaptive.trace, slots)
	fmt.Fprintln(w, "policy\thit rate\treads per demanded expert")
	for _, r := range sims {
		fmt.Fprintf(w, "%s\t%.1f%%\t%.3f\n", r.name, 100*r.res.HitRate(), float64(r.res.Reads())/float64(r.res.Requests))
	}
	if tr, prec := defaultModelTrace(b); tr != nil {
		total := 0
		for _, n := range tr.Experts {
			total += n
		}
		fmt.Fprintf(w, "\nreal routing: the default model (models/default, %d layers × %d experts) reading README.md, %d steps; early routing picked %.0f%% of the next layer's experts right\n", len(tr.Experts), tr.Experts[0], tr.Steps(), 100*prec)
		fmt.Fprintln(w, "policy\tcache 25%\tcache 50%")
		quarter, half := simulateAll(b, tr, total/4), simulateAll(b, tr, total/2)
		rows := make([][2]simResult, len(quarter))
		for i := range rows {
			rows[i] = [2]simResult{quarter[i], half[i]}
		}
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%.1f%%\t%.1f%%\n", r[0].name, 100*r[0].res.HitRate(), 100*r[1].res.HitRate())
		}
	}
	require.NoError(b, w.Flush())

	b.ReportMetric(hinted.tokensPerS, "tok/s")
	b.ReportMetric(hinted.tokensPerS/ioLimit(hinted), "of-io-limit")
	b.ReportMetric(bw.BytesPerSecond/1e6, "disk-MB/s")
	b.ReportMetric(hinted.stats.BytesPerStep()/1e6, "MB/token")
	b.ReportMetric(hinted.stats.HitRate(), "hit-rate")
	b.ReportMetric(adaptive.stats.HitRate(), "adaptive-hit-rate")
	b.ReportMetric(baseline.stats.HitRate(), "layer-lru-hit-rate")
	b.ReportMetric(resident.tokensPerS, "resident-tok/s")
}

// merge averages two runs of one configuration: tokens/s over the total
// time, counters summed, the first run's trace.
func merge(a, b run) run {
	ta, tb := float64(a.decodeSteps)/a.tokensPerS, float64(b.decodeSteps)/b.tokensPerS
	a.tokensPerS = float64(a.decodeSteps+b.decodeSteps) / (ta + tb)
	a.decodeSteps += b.decodeSteps
	a.stats = a.stats.Add(b.stats)
	a.anon, a.file = max(a.anon, b.anon), max(a.file, b.file)
	return a
}

func sizeName() string {
	if os.Getenv("MACH_BENCH_STREAMING") == "full" {
		return "full size"
	}
	return "small size; MACH_BENCH_STREAMING=full for the real run"
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

type simResult struct {
	name string
	res  expertstream.SimResult
}

// simulateAll replays tr with every policy (and speculation) at slots.
func simulateAll(b *testing.B, tr *expertstream.Trace, slots int) []simResult {
	b.Helper()
	var out []simResult
	for _, p := range expertstream.Policies() {
		r, err := expertstream.Simulate(tr, expertstream.SimOptions{Policy: p, Slots: slots})
		require.NoError(b, err)
		out = append(out, simResult{string(p), r})
	}
	r, err := expertstream.Simulate(tr, expertstream.SimOptions{Policy: expertstream.Adaptive, Slots: slots, Speculate: true})
	require.NoError(b, err)
	out = append(out, simResult{"adaptive + speculation", r})
	return out
}

// defaultModelTrace records the default model's routing while it reads
// the repository's README.md one token at a time (nil when the model or
// the text is missing), and how often early routing guessed right.
func defaultModelTrace(b *testing.B) (*expertstream.Trace, float64) {
	b.Helper()
	dir := filepath.Join("..", "..", "models", "default")
	text, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		return nil, 0
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		return nil, 0
	}
	ids := tok.Encode(string(text), false)
	if n := 3000; len(ids) > n {
		ids = ids[:n]
	}
	bk := cpu.New(cpu.Options{})
	defer bk.Close()
	cfg, err := modelconfig.Load(dir)
	require.NoError(b, err)
	w, err := model.OpenWeights(dir, cfg, bk)
	require.NoError(b, err)
	defer w.Close()
	layers := map[int][]*moe.Expert{}
	var idx []int
	for _, l := range cfg.MoELayers() {
		es, err := moe.BindExperts(w, fmt.Sprintf("model.layers.%d.mlp.", l), cfg.NumExperts, cfg.HiddenSize, cfg.MoEIntermediateSize)
		require.NoError(b, err)
		layers[l] = es
		idx = append(idx, l)
	}
	rec := expertstream.NewRecorder(moe.NewResident(layers), idx)
	m := load(b, bk, dir, rec)
	defer m.Close()
	window := cfg.MaxPositionEmbeddings
	for off := 0; off < len(ids); off += window {
		end := min(off+window, len(ids))
		c, err := m.NewCache(end-off, kernels.F16)
		require.NoError(b, err)
		for _, id := range ids[off:end] {
			_, err := m.Forward(context.Background(), &model.Batch{Seqs: []model.Seq{{Tokens: []int32{id}, Cache: c, Logits: model.NoLogits}}})
			require.NoError(b, err)
		}
		c.Release()
	}
	prec, _ := rec.HintPrecision()
	return rec.Trace(), prec
}
