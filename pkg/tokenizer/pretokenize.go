package tokenizer

import "strings"

// splitBehavior says what a Split pre-tokenizer does with the matches of its pattern, as in HF tokenizers'
// SplitDelimiterBehavior.
type splitBehavior int

const (
	behaviorRemoved splitBehavior = iota
	behaviorIsolated
	behaviorMergedWithPrevious
	behaviorMergedWithNext
	behaviorContiguous
)

var splitBehaviors = map[string]splitBehavior{
	"Removed":            behaviorRemoved,
	"Isolated":           behaviorIsolated,
	"MergedWithPrevious": behaviorMergedWithPrevious,
	"MergedWithNext":     behaviorMergedWithNext,
	"Contiguous":         behaviorContiguous,
}

// preTokenizer splits one normalized piece into words and appends the non-empty words to out, in order.
type preTokenizer interface {
	appendWords(s string, out []string) []string
}

// splitter is the Split pre-tokenizer: a regex (through a hand-written matcher) or a literal string.
type splitter struct {
	match    matcher // nil for a literal pattern
	literal  string
	behavior splitBehavior
	invert   bool
}

type span struct {
	start, end int
	isMatch    bool
}

// findMatches covers s with alternating non-match and match spans, like HF's Pattern::find_matches.
func (p *splitter) findMatches(s string, spans []span) []span {
	prev := 0
	if p.match == nil {
		if p.literal == "" {
			return append(spans, span{0, len(s), false})
		}
		for i := 0; i < len(s); {
			k := strings.Index(s[i:], p.literal)
			if k < 0 {
				break
			}
			st := i + k
			if st > prev {
				spans = append(spans, span{prev, st, false})
			}
			spans = append(spans, span{st, st + len(p.literal), true})
			prev = st + len(p.literal)
			i = prev
		}
	} else {
		for i := 0; i < len(s); {
			if e := p.match(s, i); e > i {
				if i > prev {
					spans = append(spans, span{prev, i, false})
				}
				spans = append(spans, span{i, e, true})
				prev, i = e, e
				continue
			}
			_, n := decodeRune(s, i)
			i += n
		}
	}
	if prev < len(s) {
		spans = append(spans, span{prev, len(s), false})
	}
	if p.invert {
		for k := range spans {
			spans[k].isMatch = !spans[k].isMatch
		}
	}
	return spans
}

func (p *splitter) appendWords(s string, out []string) []string {
	if s == "" {
		return out
	}
	// Fast path for the common case: isolated regex matches, emitted as they are found.
	if p.behavior == behaviorIsolated && p.match != nil && !p.invert {
		prev := 0
		for i := 0; i < len(s); {
			if e := p.match(s, i); e > i {
				if i > prev {
					out = append(out, s[prev:i])
				}
				out = append(out, s[i:e])
				prev, i = e, e
				continue
			}
			_, n := decodeRune(s, i)
			i += n
		}
		if prev < len(s) {
			out = append(out, s[prev:])
		}
		return out
	}
	var buf [16]span
	spans := p.findMatches(s, buf[:0])
	var sel []span
	switch p.behavior {
	case behaviorIsolated:
		sel = spans
	case behaviorRemoved:
		for _, sp := range spans {
			if !sp.isMatch {
				sel = append(sel, sp)
			}
		}
	case behaviorContiguous:
		prevMatch := false
		for k, sp := range spans {
			if k > 0 && sp.isMatch == prevMatch {
				sel[len(sel)-1].end = sp.end
			} else {
				sel = append(sel, sp)
			}
			prevMatch = sp.isMatch
		}
	case behaviorMergedWithPrevious:
		prevMatch := false
		for _, sp := range spans {
			if sp.isMatch && !prevMatch && len(sel) > 0 {
				sel[len(sel)-1].end = sp.end
			} else {
				sel = append(sel, sp)
			}
			prevMatch = sp.isMatch
		}
	case behaviorMergedWithNext:
		// Walk backwards: a match absorbs the piece that follows it.
		prevMatch := false
		rev := make([]span, 0, len(spans))
		for k := len(spans) - 1; k >= 0; k-- {
			sp := spans[k]
			if sp.isMatch && !prevMatch && len(rev) > 0 {
				rev[len(rev)-1].start = sp.start
			} else {
				rev = append(rev, sp)
			}
			prevMatch = sp.isMatch
		}
		for k := len(rev) - 1; k >= 0; k-- {
			sel = append(sel, rev[k])
		}
	}
	for _, sp := range sel {
		if sp.end > sp.start {
			out = append(out, s[sp.start:sp.end])
		}
	}
	return out
}

// sequence applies pre-tokenizers one after the other, each to every piece the previous one produced.
type sequence []preTokenizer

func (q sequence) appendWords(s string, out []string) []string {
	if s == "" {
		return out
	}
	cur := []string{s}
	var next []string
	for k, p := range q {
		if k == len(q)-1 {
			for _, w := range cur {
				out = p.appendWords(w, out)
			}
			return out
		}
		next = next[:0]
		for _, w := range cur {
			next = p.appendWords(w, next)
		}
		cur, next = next, cur
	}
	return append(out, cur...)
}

// noSplit is the absent pre-tokenizer: the whole piece is one word.
type noSplit struct{}

func (noSplit) appendWords(s string, out []string) []string {
	if s != "" {
		out = append(out, s)
	}
	return out
}
