package tokenizer

import (
	"strings"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites one piece of input text (the text between added tokens) before pre-tokenization.
type normalizer interface {
	normalize(s string) string
}

// unicodeNorm is one of the NFC, NFD, NFKC, NFKD normalizers.
type unicodeNorm struct{ form norm.Form }

func (u unicodeNorm) normalize(s string) string { return normalizeExact(u.form, s) }

// replace is the Replace normalizer (and decoder) with a literal pattern: every non-overlapping
// occurrence, left to right.
type replace struct{ pattern, content string }

func (r replace) normalize(s string) string {
	if r.pattern == "" {
		return s
	}
	return strings.ReplaceAll(s, r.pattern, r.content)
}

// prepend is the Prepend normalizer: it adds its text in front of every non-empty piece.
type prepend struct{ text string }

func (p prepend) normalize(s string) string {
	if s == "" {
		return s
	}
	return p.text + s
}

// normSequence applies normalizers in order.
type normSequence []normalizer

func (q normSequence) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}
