package tokenizer

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonScanner is a small strict JSON reader for tokenizer.json. encoding/json is too slow for the
// vocabulary and merges of a 10–30 MB file (hundreds of thousands of entries); this reader decodes those
// directly into maps and hands every other value to encoding/json as a raw span. It never panics: every
// read is bounds-checked and every error names the byte offset.
type jsonScanner struct {
	data []byte
	pos  int
}

type jsonSyntaxError struct {
	Offset int
	Msg    string
}

func (e *jsonSyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.Offset, e.Msg)
}

func (s *jsonScanner) fail(format string, args ...any) error {
	return &jsonSyntaxError{Offset: s.pos, Msg: fmt.Sprintf(format, args...)}
}

func (s *jsonScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *jsonScanner) peek() byte {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *jsonScanner) expect(c byte) error {
	if s.peek() != c {
		if s.pos >= len(s.data) {
			return s.fail("unexpected end of input, want %q", c)
		}
		return s.fail("got %q, want %q", s.data[s.pos], c)
	}
	s.pos++
	return nil
}

// readString reads a JSON string (the opening quote is next) and returns its decoded value.
func (s *jsonScanner) readString() (string, error) {
	b, err := s.appendString(nil)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// appendString reads a JSON string (the opening quote is next) and appends its decoded bytes to buf.
func (s *jsonScanner) appendString(buf []byte) ([]byte, error) {
	if err := s.expect('"'); err != nil {
		return buf, err
	}
	start := s.pos
	// Fast path: no escapes.
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		if c == '"' {
			buf = append(buf, s.data[start:s.pos]...)
			s.pos++
			return buf, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return buf, s.fail("control character in string")
		}
		s.pos++
	}
	if s.pos >= len(s.data) {
		return buf, s.fail("unterminated string")
	}
	buf = append(buf, s.data[start:s.pos]...)
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return buf, nil
		case c < 0x20:
			return buf, s.fail("control character in string")
		case c != '\\':
			buf = append(buf, c)
			s.pos++
			continue
		}
		if s.pos+1 >= len(s.data) {
			return buf, s.fail("unterminated escape")
		}
		e := s.data[s.pos+1]
		s.pos += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, err := s.readHex4()
			if err != nil {
				return buf, err
			}
			if utf16.IsSurrogate(r) {
				// A high surrogate must be followed by an escaped low surrogate (serde_json rejects lone
				// surrogates, so HF cannot load such a file either).
				if r >= 0xDC00 || s.pos+1 >= len(s.data) || s.data[s.pos] != '\\' || s.data[s.pos+1] != 'u' {
					return buf, s.fail("lone surrogate in \\u escape")
				}
				s.pos += 2
				r2, err := s.readHex4()
				if err != nil {
					return buf, err
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return buf, s.fail("invalid surrogate pair in \\u escape")
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return buf, s.fail("invalid escape \\%c", e)
		}
	}
	return buf, s.fail("unterminated string")
}

func (s *jsonScanner) readHex4() (rune, error) {
	if s.pos+4 > len(s.data) {
		return 0, s.fail("truncated \\u escape")
	}
	var r rune
	for k := 0; k < 4; k++ {
		v, ok := hexVal(s.data[s.pos+k])
		if !ok {
			return 0, s.fail("invalid \\u escape")
		}
		r = r<<4 | rune(v)
	}
	s.pos += 4
	return r, nil
}

// readUint reads a non-negative integer no larger than max.
func (s *jsonScanner) readUint(max int64) (int64, error) {
	s.skipSpace()
	start := s.pos
	var v int64
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		v = v*10 + int64(s.data[s.pos]-'0')
		if v > max {
			return 0, s.fail("integer larger than %d", max)
		}
		s.pos++
	}
	if s.pos == start {
		return 0, s.fail("want a non-negative integer")
	}
	if s.pos-start > 1 && s.data[start] == '0' {
		return 0, s.fail("leading zero in integer")
	}
	if s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '.', 'e', 'E':
			return 0, s.fail("want an integer, got a fraction or exponent")
		}
	}
	return v, nil
}

// skipValue skips one JSON value, validating it, and returns its raw bytes.
func (s *jsonScanner) skipValue() ([]byte, error) {
	return s.skipValueDepth(0)
}

const maxJSONDepth = 256

func (s *jsonScanner) skipValueDepth(depth int) ([]byte, error) {
	if depth > maxJSONDepth {
		return nil, s.fail("nesting deeper than %d", maxJSONDepth)
	}
	c := s.peek()
	start := s.pos
	switch {
	case c == '"':
		if _, err := s.readString(); err != nil {
			return nil, err
		}
	case c == '{':
		s.pos++
		if s.peek() == '}' {
			s.pos++
			break
		}
		for {
			if _, err := s.readString(); err != nil {
				return nil, err
			}
			if err := s.expect(':'); err != nil {
				return nil, err
			}
			if _, err := s.skipValueDepth(depth + 1); err != nil {
				return nil, err
			}
			if s.peek() == ',' {
				s.pos++
				continue
			}
			if err := s.expect('}'); err != nil {
				return nil, err
			}
			break
		}
	case c == '[':
		s.pos++
		if s.peek() == ']' {
			s.pos++
			break
		}
		for {
			if _, err := s.skipValueDepth(depth + 1); err != nil {
				return nil, err
			}
			if s.peek() == ',' {
				s.pos++
				continue
			}
			if err := s.expect(']'); err != nil {
				return nil, err
			}
			break
		}
	case c == 't':
		if err := s.literal("true"); err != nil {
			return nil, err
		}
	case c == 'f':
		if err := s.literal("false"); err != nil {
			return nil, err
		}
	case c == 'n':
		if err := s.literal("null"); err != nil {
			return nil, err
		}
	case c == '-' || (c >= '0' && c <= '9'):
		s.pos++
		for s.pos < len(s.data) {
			d := s.data[s.pos]
			if (d >= '0' && d <= '9') || d == '.' || d == 'e' || d == 'E' || d == '+' || d == '-' {
				s.pos++
				continue
			}
			break
		}
		if _, err := strconv.ParseFloat(string(s.data[start:s.pos]), 64); err != nil {
			return nil, s.fail("invalid number %q", s.data[start:s.pos])
		}
	case c == 0:
		return nil, s.fail("unexpected end of input")
	default:
		return nil, s.fail("unexpected %q", c)
	}
	return s.data[start:s.pos], nil
}

func (s *jsonScanner) literal(word string) error {
	if s.pos+len(word) > len(s.data) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return s.fail("invalid literal")
	}
	s.pos += len(word)
	return nil
}

// object calls fn for each key of the object that comes next; fn must consume the value.
func (s *jsonScanner) object(fn func(key string) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		key, err := s.readString()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := fn(key); err != nil {
			return err
		}
		if s.peek() == ',' {
			s.pos++
			continue
		}
		return s.expect('}')
	}
}

// object2 calls fn for each member of the object that comes next; fn reads the key, the colon and the
// value (for callers that want the key as bytes).
func (s *jsonScanner) object2(fn func() error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		if err := fn(); err != nil {
			return err
		}
		if s.peek() == ',' {
			s.pos++
			continue
		}
		return s.expect('}')
	}
}

// array calls fn for each element of the array that comes next; fn must consume the element.
func (s *jsonScanner) array(fn func(i int) error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		if err := fn(i); err != nil {
			return err
		}
		if s.peek() == ',' {
			s.pos++
			continue
		}
		return s.expect(']')
	}
}
