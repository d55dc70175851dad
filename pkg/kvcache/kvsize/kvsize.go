// Package kvsize is the memory arithmetic of KV caches whose size is not
// simply tokens × width: it knows the shapes, not the backend, so the
// preflight estimate (mach check) and the caches themselves (package
// kvcache) compute the same numbers from one function. It imports nothing
// that computes, which keeps mach check light.
package kvsize

// CompressedLayer is one layer of DeepSeek-V4's compressed cache: one
// shared K=V head over a sliding window, plus (Ratio > 0) one compressed
// entry per Ratio tokens, and (IndexDim > 0, compressed sparse attention)
// the lightning indexer's own compressed keys.
type CompressedLayer struct {
	// HeadDim is the width of a K=V row.
	HeadDim int
	// Window is the sliding window: a query sees the Window keys ending at
	// its own position.
	Window int
	// Ratio is the number of tokens pooled into one entry (0: a
	// sliding-only layer).
	Ratio int
	// Overlap: an entry pools the previous window's tokens too (compressed
	// sparse attention), so the compressor projects two series per token.
	Overlap bool
	// IndexDim is the width of the indexer's keys (0: no indexer).
	IndexDim int
}

// Coff is the number of series the main compressor projects per token.
func (l CompressedLayer) Coff() int {
	if l.Overlap {
		return 2
	}
	return 1
}

// RawKeep is the number of past tokens whose projections the main
// compressor needs between steps: the unfinished window, and for an
// overlapping compressor the window before it.
func (l CompressedLayer) RawKeep() int {
	if l.Ratio <= 0 {
		return 0
	}
	return l.Coff()*l.Ratio - 1
}

// RawWidth is the f32 values the main compressor keeps per token: the K=V
// projection and the gate of every series.
func (l CompressedLayer) RawWidth() int { return 2 * l.Coff() * l.HeadDim }

// IndexRawKeep and IndexRawWidth are RawKeep and RawWidth of the indexer's
// compressor, which always overlaps.
func (l CompressedLayer) IndexRawKeep() int {
	if l.IndexDim <= 0 || l.Ratio <= 0 {
		return 0
	}
	return 2*l.Ratio - 1
}

// IndexRawWidth: see IndexRawKeep.
func (l CompressedLayer) IndexRawWidth() int { return 4 * l.IndexDim }

// Entries is the number of compressed entries after tokens tokens: one per
// closed window.
func (l CompressedLayer) Entries(tokens int) int {
	if l.Ratio <= 0 || tokens <= 0 {
		return 0
	}
	return tokens / l.Ratio
}

// Compressed returns the bytes a compressed cache holds for a sequence of
// tokens tokens whose K=V rows and entries take kvBytes per value (2 for
// f16/bf16, 4 for f32): per layer the window rows and entries in kvBytes,
// the indexer's keys and the compressors' pending projections in f32.
func Compressed(layers []CompressedLayer, tokens, kvBytes int) int64 {
	var n int64
	for _, l := range layers {
		n += int64(min(tokens, l.Window)) * int64(l.HeadDim) * int64(kvBytes)
		e := int64(l.Entries(tokens))
		n += e * int64(l.HeadDim) * int64(kvBytes)
		n += e * int64(l.IndexDim) * 4
		n += int64(min(tokens, l.RawKeep())) * int64(l.RawWidth()) * 4
		n += int64(min(tokens, l.IndexRawKeep())) * int64(l.IndexRawWidth()) * 4
	}
	return n
}
