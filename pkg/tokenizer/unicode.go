package tokenizer

import (
	"sync"
	"unicode"
	"unicode/utf8"
)

// Character classes the split patterns test, as one bit set per code point. The pre-tokenizer regexes are
// run by Oniguruma in Hugging Face tokenizers; its \p{..} classes are the Unicode general categories and
// its \s is the White_Space property (Unicode 15.0 in both Oniguruma 6.9.8 and Go's unicode package).
const (
	cL     uint16 = 1 << iota // \p{L}: Lu Ll Lt Lm Lo
	cLu                       // \p{Lu}
	cLl                       // \p{Ll}
	cLt                       // \p{Lt}
	cLm                       // \p{Lm}
	cLo                       // \p{Lo}
	cM                        // \p{M}: Mn Mc Me
	cN                        // \p{N}: Nd Nl No
	cP                        // \p{P}
	cS                        // \p{S}
	cSpace                    // \s: White_Space
)

// tableLimit covers the BMP and the supplementary planes that hold emoji and the common CJK extensions;
// code points above it are classified through the unicode package directly (rare, slower).
const tableLimit = 0x30000

var (
	classOnce  sync.Once
	classTable []uint16
)

// classTableInit fills the table by walking each category's ranges, which costs well under a
// millisecond, instead of probing 196608 code points one by one.
func classTableInit() {
	t := make([]uint16, tableLimit)
	set := func(rt *unicode.RangeTable, bits uint16) {
		for _, r := range rt.R16 {
			for c := uint32(r.Lo); c <= uint32(r.Hi); c += uint32(r.Stride) {
				t[c] |= bits
			}
		}
		for _, r := range rt.R32 {
			for c := r.Lo; c <= r.Hi && c < tableLimit; c += r.Stride {
				t[c] |= bits
			}
		}
	}
	set(unicode.Lu, cL|cLu)
	set(unicode.Ll, cL|cLl)
	set(unicode.Lt, cL|cLt)
	set(unicode.Lm, cL|cLm)
	set(unicode.Lo, cL|cLo)
	set(unicode.M, cM)
	set(unicode.N, cN)
	set(unicode.P, cP)
	set(unicode.S, cS)
	set(unicode.White_Space, cSpace)
	classTable = t
}

// classOf returns the class bits of r. The table must have been initialised (Load does it).
func classOf(r rune) uint16 {
	if uint32(r) < tableLimit {
		return classTable[r]
	}
	return classSlow(r)
}

func classSlow(r rune) uint16 {
	var c uint16
	switch {
	case unicode.Is(unicode.Lu, r):
		c = cL | cLu
	case unicode.Is(unicode.Ll, r):
		c = cL | cLl
	case unicode.Is(unicode.Lt, r):
		c = cL | cLt
	case unicode.Is(unicode.Lm, r):
		c = cL | cLm
	case unicode.Is(unicode.Lo, r):
		c = cL | cLo
	case unicode.Is(unicode.M, r):
		c = cM
	case unicode.Is(unicode.N, r):
		c = cN
	case unicode.Is(unicode.P, r):
		c = cP
	case unicode.Is(unicode.S, r):
		c = cS
	}
	if unicode.Is(unicode.White_Space, r) {
		c |= cSpace
	}
	return c
}

// decodeRune is utf8.DecodeRuneInString with an ASCII fast path. The text it sees is always valid UTF-8
// (Encode repairs invalid input first).
func decodeRune(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}
