package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// addedToken is one entry of tokenizer.json's added_tokens.
type addedToken struct {
	ID         int32  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// addedMatcher finds added tokens in text the way HF's AddedVocabulary does: an Aho-Corasick automaton
// with leftmost-longest semantics over the tokens' contents, then the single_word, lstrip and rstrip
// rules per match. It is a byte trie walked from each candidate start (the first byte filters starts).
type addedMatcher struct {
	first  [256]bool
	edges  map[uint64]int32 // (node << 8 | byte) -> child node
	term   []int32          // node -> index into tokens, or -1
	tokens []addedToken
}

func newAddedMatcher(tokens []addedToken) *addedMatcher {
	m := &addedMatcher{edges: make(map[uint64]int32), term: []int32{-1}}
	for _, t := range tokens {
		if t.Content == "" {
			continue
		}
		node := int32(0)
		for k := 0; k < len(t.Content); k++ {
			key := uint64(node)<<8 | uint64(t.Content[k])
			child, ok := m.edges[key]
			if !ok {
				child = int32(len(m.term))
				m.term = append(m.term, -1)
				m.edges[key] = child
			}
			node = child
		}
		if m.term[node] < 0 { // the first token with this content wins, like the automaton's pattern order
			m.term[node] = int32(len(m.tokens))
			m.tokens = append(m.tokens, t)
		}
		m.first[t.Content[0]] = true
	}
	return m
}

// longestAt returns the token index and end of the longest token starting at i, or -1.
func (m *addedMatcher) longestAt(s string, i int) (int32, int) {
	node := int32(0)
	best, bestEnd := int32(-1), -1
	for k := i; k < len(s); k++ {
		child, ok := m.edges[uint64(node)<<8|uint64(s[k])]
		if !ok {
			break
		}
		node = child
		if t := m.term[node]; t >= 0 {
			best, bestEnd = t, k+1
		}
	}
	return best, bestEnd
}

// segment is a piece of input: either text (id < 0) or an added token.
type segment struct {
	text string
	id   int32
}

// split covers s with text segments and added-token segments, in order. Empty text segments are not
// produced.
func (m *addedMatcher) split(s string, out []segment) []segment {
	if m == nil || len(m.tokens) == 0 {
		if s != "" {
			out = append(out, segment{s, -1})
		}
		return out
	}
	startOffset := 0
	for i := 0; i < len(s); {
		if !m.first[s[i]] {
			i++
			continue
		}
		ti, end := m.longestAt(s, i)
		if ti < 0 {
			i++
			continue
		}
		t := &m.tokens[ti]
		start, stop := i, end
		next := end // the automaton resumes after the raw match, whatever the strip rules did
		if t.SingleWord {
			if (start > 0 && endsWithWord(s[:start])) || (stop < len(s) && startsWithWord(s[stop:])) {
				i = next
				continue
			}
		}
		if t.LStrip {
			start = max(leftSpaceStart(s[:start]), startOffset)
		}
		if t.RStrip {
			stop += rightSpaceLen(s[stop:])
		}
		if startOffset < start {
			out = append(out, segment{s[startOffset:start], -1})
		}
		out = append(out, segment{s[start:stop], t.ID})
		startOffset = stop
		i = next
	}
	if startOffset < len(s) {
		out = append(out, segment{s[startOffset:], -1})
	}
	return out
}

// isWordChar is Rust regex's \w: alphabetic, digit, mark, connector punctuation, join control.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.M, r) ||
		unicode.Is(unicode.Pc, r) || unicode.Is(unicode.Join_Control, r) || unicode.Is(unicode.Nl, r) ||
		unicode.Is(unicode.Other_Alphabetic, r)
}

func endsWithWord(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return isWordChar(r)
}

func startsWithWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return isWordChar(r)
}

// leftSpaceStart is the start of the run of white space that ends s.
func leftSpaceStart(s string) int {
	for len(s) > 0 {
		r, n := utf8.DecodeLastRuneInString(s)
		if !unicode.Is(unicode.White_Space, r) {
			break
		}
		s = s[:len(s)-n]
	}
	return len(s)
}

// rightSpaceLen is the length of the run of white space that starts s.
func rightSpaceLen(s string) int {
	k := 0
	for k < len(s) {
		r, n := utf8.DecodeRuneInString(s[k:])
		if !unicode.Is(unicode.White_Space, r) {
			break
		}
		k += n
	}
	return k
}
