package tokenizer

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// benchDoc is the corpus joined with "\n" and repeated to at least 10 MB, the text tools/refgen's
// --bench mode encodes with HF tokenizers (same joining, same repetition), so MB/s compare directly.
func benchDoc(tb testing.TB) (doc string, reps int) {
	var b strings.Builder
	for i, c := range readCorpus(tb) {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(c.Text)
	}
	doc = b.String()
	reps = (10_000_000 + len(doc) - 1) / len(doc)
	return doc, reps
}

// hfBench reads the bench.json that `tools/refgen/tokenizers.py --bench --out DIR` writes, named by
// MACH_HF_BENCH_JSON, so the benchmark can report its speed relative to HF tokenizers measured on the
// same machine. Empty when the variable is unset.
func hfBench(tb testing.TB) map[string]float64 {
	path := os.Getenv("MACH_HF_BENCH_JSON")
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("MACH_HF_BENCH_JSON: %v", err)
	}
	var f struct {
		Results []struct {
			Tokenizer string  `json:"tokenizer"`
			MBPerS    float64 `json:"mb_per_s"`
		} `json:"results"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		tb.Fatalf("MACH_HF_BENCH_JSON %s: %v", path, err)
	}
	out := map[string]float64{}
	for _, r := range f.Results {
		out[r.Tokenizer] = r.MBPerS
	}
	return out
}

// BenchmarkEncode encodes the corpus repeated to >= 10 MB per iteration, single-threaded; b.SetBytes
// makes the MB/s column comparable with `tools/refgen/tokenizers.py --bench`. With MACH_HF_BENCH_JSON set
// it also reports x-hf, the speed as a multiple of HF tokenizers' on the same machine (the goal: > 1).
func BenchmarkEncode(b *testing.B) {
	hf := hfBench(b)
	for _, name := range fixtureSets {
		b.Run(name, func(b *testing.B) {
			tok := fixture(b, name)
			doc, reps := benchDoc(b)
			tok.Encode(doc, false) // warm-up, as the Python side does (fills the word cache)
			total := int64(len(doc) * reps)
			b.SetBytes(total)
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				for r := 0; r < reps; r++ {
					tok.Encode(doc, false)
				}
			}
			if ref := hf[name]; ref > 0 {
				mbps := float64(total) * float64(b.N) / time.Since(start).Seconds() / 1e6
				b.ReportMetric(mbps/ref, "x-hf")
			}
		})
	}
}

// loadLimit is the goal for loading Qwen's 11 MB tokenizer.json.
const loadLimit = 300 * time.Millisecond

// BenchmarkLoad measures Load of each fixture tokenizer and reports of-300ms, the time as a fraction of
// the 300 ms goal (set for Qwen3; the others are larger or smaller files).
func BenchmarkLoad(b *testing.B) {
	for _, name := range fixtureSets {
		b.Run(name, func(b *testing.B) {
			dir := fixtureDir(b, name)
			start := time.Now()
			for b.Loop() {
				if _, err := Load(dir); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start))/float64(b.N)/float64(loadLimit), "of-300ms")
		})
	}
}
