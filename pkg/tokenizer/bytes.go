package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// The GPT-2 byte-level alphabet: every byte stands for a printable character. Printable Latin-1 bytes
// ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 bytes map, in order, to U+0100 and up.
var byteToChar, byteToStr, charToByte = byteLevelTables()

// byteLevelTables builds byte -> character, byte -> string and character -> byte (-1: not in the
// alphabet).
func byteLevelTables() (toChar [256]rune, toStr [256]string, toByte [0x144]int16) {
	for i := range toByte {
		toByte[i] = -1
	}
	next := rune(0x100)
	for b := 0; b < 256; b++ {
		var r rune
		switch {
		case b >= '!' && b <= '~', b >= 0xA1 && b <= 0xAC, b >= 0xAE && b <= 0xFF:
			r = rune(b)
		default:
			r = next
			next++
		}
		toChar[b] = r
		toStr[b] = string(r)
		toByte[r] = int16(b)
	}
	return toChar, toStr, toByte
}

func byteLevelString(b byte) string { return byteToStr[b] }

// byteLevelDecode appends the bytes a byte-level token stands for; ok is false when the token holds a
// character outside the alphabet (HF then keeps the token's own UTF-8 bytes).
func byteLevelDecode(tok string, out []byte) ([]byte, bool) {
	start := len(out)
	for _, r := range tok {
		if r < 0 || int(r) >= len(charToByte) || charToByte[r] < 0 {
			return out[:start], false
		}
		out = append(out, byte(charToByte[r]))
	}
	return out, true
}

// byteLevelEncode maps raw bytes to byte-level characters.
func byteLevelEncode(raw string) string {
	var b strings.Builder
	b.Grow(2 * len(raw))
	for k := 0; k < len(raw); k++ {
		b.WriteRune(byteToChar[raw[k]])
	}
	return b.String()
}

// lossyUTF8 converts b to a string, replacing each maximal invalid subsequence by U+FFFD: the rule of
// Rust's String::from_utf8_lossy (used by HF decoders) and of Python's bytes.decode(errors="replace")
// (what a Python caller gets for invalid input), which differs from Go's per-byte replacement.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			sb.WriteByte(b[i])
			i++
			continue
		}
		if r, n := utf8.DecodeRune(b[i:]); r != utf8.RuneError || n > 1 {
			sb.Write(b[i : i+n])
			i += n
			continue
		}
		sb.WriteString("\uFFFD")
		i += invalidPrefixLen(b[i:])
	}
	return sb.String()
}

// validString returns s unchanged when it is valid UTF-8, else with each maximal invalid subsequence
// replaced by U+FFFD (see lossyUTF8).
func validString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return lossyUTF8([]byte(s))
}

// invalidPrefixLen is the length of the maximal prefix of b that could start a valid sequence but does
// not complete one (at least 1). b[0] does not start a valid sequence.
func invalidPrefixLen(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		x := b[n]
		if k == 0 {
			if x < lo || x > hi {
				return n
			}
		} else if x < 0x80 || x > 0xBF {
			return n
		}
		n++
	}
	return n
}

func validUTF8(s string) bool { return utf8.ValidString(s) }
