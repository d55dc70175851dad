package tokenizer

import (
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// golang.org/x/text/unicode/norm implements the Stream-Safe Text Format: after 30 non-starters in a row it
// inserts U+034F COMBINING GRAPHEME JOINER. Hugging Face's normalizers (the Rust unicode-normalization
// crate) do not, so for such input the x/text result differs from HF's. normalizeExact detects that case
// (a CGJ appeared) and falls back to the plain UAX #15 algorithm built on x/text's per-rune data.
const cgj = "\u034F"

func normalizeExact(form norm.Form, s string) string {
	n := form.QuickSpanString(s)
	if n == len(s) {
		return s
	}
	// Copy the prefix that is already normalized, then normalize one segment (from a boundary to the next
	// starter that nothing can combine with) at a time where x/text's quick check fails, and skip ahead
	// again. x/text's result is used unless it inserted a CGJ; then the segment takes the slow path.
	var b strings.Builder
	b.Grow(len(s) + 16)
	for {
		b.WriteString(s[:n])
		s = s[n:]
		if s == "" {
			return b.String()
		}
		end := len(s)
		for i := 0; i < len(s); {
			p := form.PropertiesString(s[i:])
			if i > 0 && p.BoundaryBefore() {
				end = i
				break
			}
			i += max(p.Size(), 1)
		}
		seg := s[:end]
		if out, ok := normalizeChecked(form, seg); ok {
			b.WriteString(out)
		} else {
			b.WriteString(normalizeSlow(form, seg))
		}
		s = s[end:]
		n = form.QuickSpanString(s)
	}
}

// normalizeChecked normalizes with x/text and reports whether the result is free of inserted CGJs.
func normalizeChecked(form norm.Form, s string) (string, bool) {
	out := form.String(s)
	return out, strings.Count(out, cgj) == strings.Count(s, cgj)
}

// normalizeSlow: full decomposition, canonical ordering, then (for NFC/NFKC) canonical composition.
func normalizeSlow(form norm.Form, s string) string {
	decompForm := norm.NFD
	if form == norm.NFKC || form == norm.NFKD {
		decompForm = norm.NFKD
	}
	d := make([]rune, 0, len(s))
	for i := 0; i < len(s); {
		p := decompForm.PropertiesString(s[i:])
		n := p.Size()
		if n == 0 { // cannot happen on valid UTF-8; keep going
			n = 1
		}
		r, _ := utf8.DecodeRuneInString(s[i:])
		switch {
		case isHangulSyllable(r):
			d = appendHangulDecomposition(d, r)
		case p.Decomposition() != nil:
			d = append(d, []rune(string(p.Decomposition()))...)
		default:
			d = append(d, r)
		}
		i += n
	}
	// Canonical ordering: stable sort of every run of non-starters by combining class.
	for i := 0; i < len(d); {
		if ccc(d[i]) == 0 {
			i++
			continue
		}
		j := i
		for j < len(d) && ccc(d[j]) != 0 {
			j++
		}
		slices.SortStableFunc(d[i:j], func(a, b rune) int { return int(ccc(a)) - int(ccc(b)) })
		i = j
	}
	if form == norm.NFC || form == norm.NFKC {
		d = compose(d)
	}
	return string(d)
}

func ccc(r rune) uint8 { return norm.NFD.PropertiesString(string(r)).CCC() }

// compose is the canonical composition algorithm of UAX #15.
func compose(d []rune) []rune {
	if len(d) == 0 {
		return d
	}
	starterPos := 0
	lastClass := int(ccc(d[0]))
	if lastClass != 0 {
		lastClass = 256 // a leading non-starter blocks everything after it from composing with it
	}
	out := 1
	for i := 1; i < len(d); i++ {
		ch := d[i]
		chClass := int(ccc(ch))
		if c, ok := composePair(d[starterPos], ch); ok && (lastClass < chClass || lastClass == 0) {
			d[starterPos] = c
			continue
		}
		if chClass == 0 {
			starterPos = out
		}
		lastClass = chClass
		d[out] = ch
		out++
	}
	return d[:out]
}

const (
	hangulSBase  = 0xAC00
	hangulLBase  = 0x1100
	hangulVBase  = 0x1161
	hangulTBase  = 0x11A7
	hangulLCount = 19
	hangulVCount = 21
	hangulTCount = 28
	hangulNCount = hangulVCount * hangulTCount
	hangulSCount = hangulLCount * hangulNCount
)

func isHangulSyllable(r rune) bool { return r >= hangulSBase && r < hangulSBase+hangulSCount }

func appendHangulDecomposition(d []rune, r rune) []rune {
	si := r - hangulSBase
	d = append(d, hangulLBase+si/hangulNCount, hangulVBase+(si%hangulNCount)/hangulTCount)
	if t := si % hangulTCount; t != 0 {
		d = append(d, hangulTBase+t)
	}
	return d
}

var pairCache sync.Map // [2]rune -> rune (-1: no composite)

// composePair returns the primary composite of a and b. Hangul is algorithmic; everything else asks
// x/text's NFC for the two-rune string (it composes exactly the primary composites that are not excluded).
func composePair(a, b rune) (rune, bool) {
	if a >= hangulLBase && a < hangulLBase+hangulLCount && b >= hangulVBase && b < hangulVBase+hangulVCount {
		return hangulSBase + ((a-hangulLBase)*hangulVCount+(b-hangulVBase))*hangulTCount, true
	}
	if isHangulSyllable(a) && (a-hangulSBase)%hangulTCount == 0 && b > hangulTBase && b < hangulTBase+hangulTCount {
		return a + (b - hangulTBase), true
	}
	key := [2]rune{a, b}
	if v, ok := pairCache.Load(key); ok {
		c := v.(rune)
		return c, c >= 0
	}
	c := rune(-1)
	if out := []rune(norm.NFC.String(string([]rune{a, b}))); len(out) == 1 {
		c = out[0]
	}
	pairCache.Store(key, c)
	return c, c >= 0
}
