package tokenizer

import (
	"strings"
	"testing"
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

// BenchmarkEncode encodes the corpus repeated to >= 10 MB per iteration, single-threaded; b.SetBytes
// makes the MB/s column comparable with `tools/refgen/tokenizers.py --bench`.
func BenchmarkEncode(b *testing.B) {
	for _, name := range fixtureSets {
		b.Run(name, func(b *testing.B) {
			tok := fixture(b, name)
			doc, reps := benchDoc(b)
			tok.Encode(doc, false) // warm-up, as the Python side does (fills the word cache)
			b.SetBytes(int64(len(doc) * reps))
			b.ResetTimer()
			for b.Loop() {
				for r := 0; r < reps; r++ {
					tok.Encode(doc, false)
				}
			}
		})
	}
}

// BenchmarkLoad measures Load of each fixture tokenizer (the goal: Qwen's 11 MB tokenizer.json in under
// 300 ms).
func BenchmarkLoad(b *testing.B) {
	for _, name := range fixtureSets {
		b.Run(name, func(b *testing.B) {
			dir := fixtureDir(b, name)
			for b.Loop() {
				if _, err := Load(dir); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
