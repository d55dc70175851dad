package tokenizer

import "strings"

// decoder turns token strings back into text pieces, like HF's Decoder::decode_chain; the pieces are
// concatenated at the end.
type decoder interface {
	decodeChain(tokens []string) []string
}

// byteLevelDecoder maps byte-level characters back to bytes and reads the bytes as UTF-8, replacing
// invalid sequences. A token with a character outside the alphabet (an added token such as
// "<｜User｜>") contributes its own UTF-8 bytes.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(tokens []string) []string {
	var buf []byte
	for _, t := range tokens {
		var ok bool
		if buf, ok = byteLevelDecode(t, buf); !ok {
			buf = append(buf, t...)
		}
	}
	return []string{lossyUTF8(buf)}
}

// replaceDecoder replaces a literal pattern in every token.
type replaceDecoder struct{ pattern, content string }

func (r replaceDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		if r.pattern == "" {
			out[i] = t
		} else {
			out[i] = strings.ReplaceAll(t, r.pattern, r.content)
		}
	}
	return out
}

// byteFallbackDecoder turns runs of "<0xXX>" tokens into the bytes they stand for; a run that is not
// valid UTF-8 becomes one U+FFFD per byte token, as HF's ByteFallback decoder does.
type byteFallbackDecoder struct{}

// fallbackByte parses a "<0xXX>" token. Rust's u8::from_str_radix, which HF uses, also takes a leading '+'.
func fallbackByte(t string) (byte, bool) {
	if len(t) != 6 || t[:3] != "<0x" || t[5] != '>' {
		return 0, false
	}
	h := t[3:5]
	if h[0] == '+' {
		v, ok := hexVal(h[1])
		return v, ok
	}
	hi, ok1 := hexVal(h[0])
	lo, ok2 := hexVal(h[1])
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func (byteFallbackDecoder) decodeChain(tokens []string) []string {
	out := make([]string, 0, len(tokens))
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		if s := string(run); validUTF8(s) {
			out = append(out, s)
		} else {
			for range run {
				out = append(out, "\uFFFD")
			}
		}
		run = run[:0]
	}
	for _, t := range tokens {
		if b, ok := fallbackByte(t); ok {
			run = append(run, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// fuseDecoder joins all tokens into one.
type fuseDecoder struct{}

func (fuseDecoder) decodeChain(tokens []string) []string {
	return []string{strings.Join(tokens, "")}
}

// decoderSequence chains decoders.
type decoderSequence []decoder

func (q decoderSequence) decodeChain(tokens []string) []string {
	for _, d := range q {
		tokens = d.decodeChain(tokens)
	}
	return tokens
}
