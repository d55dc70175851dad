package chat

// A byte-level JSON-object recognizer, shared by JSON mode
// (response_format json_object) and forced tool calls (ForceToolCall) in
// the server's constrained decoding.

// JSON recognizer modes.
const (
	jTop       uint8 = iota // the top-level object must start (the zero value)
	jValue                  // a value must start
	jObjKeyEnd              // after '{': a key or '}'
	jObjKey                 // after ',' in an object: a key
	jColon                  // after a key
	jObjNext                // after a member: ',' or '}'
	jArrValEnd              // after '[': a value or ']'
	jArrNext                // after an element: ',' or ']'
	jString                 // inside a string
	jNumber                 // inside a number
	jLiteral                // inside true, false or null
	jDone                   // the object is closed: only whitespace
)

// Number sub-states.
const (
	nMinus    uint8 = iota // after '-': a digit
	nZero                  // after a leading 0
	nInt                   // integer digits
	nDot                   // after '.': a digit
	nFrac                  // fraction digits
	nExp                   // after 'e': sign or digit
	nExpSign               // after the exponent's sign: a digit
	nExpDigit              // exponent digits
)

// MaxJSONSpace bounds a run of whitespace between tokens of the object. The
// object must start at the first byte and nothing may follow it, so a
// model that prefers whitespace cannot fill max_tokens with it.
const MaxJSONSpace = 32

// JSONRecognizer recognizes one JSON object byte by byte: Feed refuses
// the first byte after which the text can no longer be (a prefix of) one
// JSON object, and Done says the object is closed. The object must start
// at the first byte and nothing may follow it; runs of whitespace between
// tokens are bounded by MaxJSONSpace. Non-ASCII bytes only ever appear
// inside strings, where JSON allows any byte, so a token's lossy decoding
// (a partial UTF-8 character becomes U+FFFD) is judged correctly. The
// zero value expects the object's opening '{'; CopyFrom forks a state.
type JSONRecognizer struct {
	stack []byte // open '{' and '['
	mode  uint8
	num   uint8
	esc   uint8  // in a string: 0, 1 after '\', 2–5 reading \u hex digits
	key   bool   // the string is an object key
	lit   string // the rest of a literal
	space int    // whitespace bytes in a row
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// afterValue moves past a completed value.
func (s *JSONRecognizer) afterValue() {
	switch {
	case len(s.stack) == 0:
		s.mode = jDone
	case s.stack[len(s.stack)-1] == '{':
		s.mode = jObjNext
	default:
		s.mode = jArrNext
	}
}

// startValue begins a value with c; false if c cannot start one.
func (s *JSONRecognizer) startValue(c byte) bool {
	switch {
	case c == '{':
		s.stack = append(s.stack, '{')
		s.mode = jObjKeyEnd
	case c == '[':
		s.stack = append(s.stack, '[')
		s.mode = jArrValEnd
	case c == '"':
		s.mode, s.key, s.esc = jString, false, 0
	case c == '-':
		s.mode, s.num = jNumber, nMinus
	case c == '0':
		s.mode, s.num = jNumber, nZero
	case c >= '1' && c <= '9':
		s.mode, s.num = jNumber, nInt
	case c == 't':
		s.mode, s.lit = jLiteral, "rue"
	case c == 'f':
		s.mode, s.lit = jLiteral, "alse"
	case c == 'n':
		s.mode, s.lit = jLiteral, "ull"
	default:
		return false
	}
	return true
}

// close ends the innermost container with c ('}' or ']').
func (s *JSONRecognizer) close(c byte) bool {
	n := len(s.stack)
	if n == 0 || (c == '}') != (s.stack[n-1] == '{') {
		return false
	}
	s.stack = s.stack[:n-1]
	s.afterValue()
	return true
}

// Feed advances over one byte; false if the output can no longer be a
// JSON object (the state is then undefined).
func (s *JSONRecognizer) Feed(c byte) bool {
	if s.mode != jString && isSpace(c) {
		switch s.mode {
		case jTop, jDone:
			return false
		case jNumber, jLiteral:
			// ends the number below; a literal cannot end in a space
		default:
			s.space++
			return s.space <= MaxJSONSpace
		}
	} else {
		s.space = 0
	}
	switch s.mode {
	case jTop:
		if c != '{' {
			return false
		}
		return s.startValue(c)
	case jValue:
		return s.startValue(c)
	case jObjKeyEnd, jObjKey:
		switch {
		case c == '"':
			s.mode, s.key, s.esc = jString, true, 0
			return true
		case c == '}' && s.mode == jObjKeyEnd:
			return s.close(c)
		}
		return false
	case jColon:
		if c == ':' {
			s.mode = jValue
			return true
		}
		return false
	case jObjNext, jArrNext:
		switch {
		case c == ',':
			if s.mode == jObjNext {
				s.mode = jObjKey
			} else {
				s.mode = jValue
			}
			return true
		case c == '}' || c == ']':
			return s.close(c)
		}
		return false
	case jArrValEnd:
		if c == ']' {
			return s.close(c)
		}
		return s.startValue(c)
	case jString:
		switch {
		case s.esc == 1:
			switch c {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.esc = 0
			case 'u':
				s.esc = 2
			default:
				return false
			}
			return true
		case s.esc >= 2:
			if !isHex(c) {
				return false
			}
			if s.esc++; s.esc == 6 {
				s.esc = 0
			}
			return true
		case c == '\\':
			s.esc = 1
			return true
		case c == '"':
			if s.key {
				s.mode = jColon
			} else {
				s.afterValue()
			}
			return true
		}
		return c >= 0x20
	case jNumber:
		digit := c >= '0' && c <= '9'
		switch s.num {
		case nMinus:
			switch {
			case c == '0':
				s.num = nZero
			case digit:
				s.num = nInt
			default:
				return false
			}
			return true
		case nDot, nExpSign:
			if !digit {
				return false
			}
			s.num++
			return true
		case nExp:
			switch {
			case c == '+' || c == '-':
				s.num = nExpSign
			case digit:
				s.num = nExpDigit
			default:
				return false
			}
			return true
		}
		// nZero, nInt, nFrac, nExpDigit: the number may end here.
		switch {
		case digit && s.num != nZero:
			return true
		case c == '.' && (s.num == nZero || s.num == nInt):
			s.num = nDot
			return true
		case (c == 'e' || c == 'E') && s.num != nExpDigit:
			s.num = nExp
			return true
		}
		s.afterValue()
		return s.Feed(c)
	case jLiteral:
		if s.lit == "" || c != s.lit[0] {
			return false
		}
		if s.lit = s.lit[1:]; s.lit == "" {
			s.afterValue()
		}
		return true
	}
	return false // jDone: nothing after the object
}

// Done reports whether the object is complete.
func (s *JSONRecognizer) Done() bool { return s.mode == jDone }

// CopyFrom makes s a copy of o, reusing s's stack.
func (s *JSONRecognizer) CopyFrom(o *JSONRecognizer) {
	stack := append(s.stack[:0], o.stack...)
	*s = *o
	s.stack = stack
}

// Depth is the number of open objects and arrays.
func (s *JSONRecognizer) Depth() int { return len(s.stack) }

// inString reports whether the recognizer is inside a string.
func (s *JSONRecognizer) inString() bool { return s.mode == jString }

// expectsKey reports whether an object key (or, after '{', the object's
// end) must come next.
func (s *JSONRecognizer) expectsKey() bool { return s.mode == jObjKeyEnd || s.mode == jObjKey }
