package server

import (
	"math"
	"sync"

	"github.com/maniac-ai/mach/pkg/scheduler"
)

// JSON mode (response_format json_object): a scheduler constraint that
// masks every token whose text would make the output stop being a prefix
// of one JSON object, and allows end-of-sequence only once the object is
// closed. The check is a byte-level JSON recognizer run from the current
// state over each token's text; non-ASCII bytes only ever appear inside
// strings, where JSON allows any byte, so a token's lossy decoding (a
// partial UTF-8 character becomes U+FFFD) judges it correctly.

// JSON recognizer modes.
const (
	jValue     uint8 = iota // a value must start
	jTop                    // the top-level object must start
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

// maxSpace bounds a run of whitespace between tokens of the object. The
// object must start at the first byte and nothing may follow it, so a
// model that prefers whitespace cannot fill max_tokens with it.
const maxSpace = 32

// jsonState is the recognizer's state; copying it (with its stack) forks
// it.
type jsonState struct {
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
func (s *jsonState) afterValue() {
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
func (s *jsonState) startValue(c byte) bool {
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
func (s *jsonState) close(c byte) bool {
	n := len(s.stack)
	if n == 0 || (c == '}') != (s.stack[n-1] == '{') {
		return false
	}
	s.stack = s.stack[:n-1]
	s.afterValue()
	return true
}

// feed advances over one byte; false if the output can no longer be a
// JSON object.
func (s *jsonState) feed(c byte) bool {
	if s.mode != jString && isSpace(c) {
		switch s.mode {
		case jTop, jDone:
			return false
		case jNumber, jLiteral:
			// ends the number below; a literal cannot end in a space
		default:
			s.space++
			return s.space <= maxSpace
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
		return s.feed(c)
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

// jsonVocab is what the constraint needs to know about every token.
type jsonVocab struct {
	text []string // decoded text; "" for special or empty tokens (never allowed)
	eos  map[int32]bool
}

// jsonConstraint is one request's JSON-mode constraint.
type jsonConstraint struct {
	v       *jsonVocab
	st      jsonState
	scratch jsonState
}

var _ scheduler.Constraint = (*jsonConstraint)(nil)

func newJSONConstraint(v *jsonVocab) *jsonConstraint {
	return &jsonConstraint{v: v, st: jsonState{mode: jTop}}
}

// allows reports whether text may follow the current state.
func (j *jsonConstraint) allows(text string) bool {
	s := &j.scratch
	s.stack = append(s.stack[:0], j.st.stack...)
	s.mode, s.num, s.esc, s.key, s.lit, s.space = j.st.mode, j.st.num, j.st.esc, j.st.key, j.st.lit, j.st.space
	for i := range len(text) {
		if !s.feed(text[i]) {
			return false
		}
	}
	return true
}

// Mask implements scheduler.Constraint.
func (j *jsonConstraint) Mask(logits []float32) {
	ninf := float32(math.Inf(-1))
	done := j.st.mode == jDone
	for id := range logits {
		if id >= len(j.v.text) {
			logits[id] = ninf
			continue
		}
		if j.v.eos[int32(id)] {
			if !done {
				logits[id] = ninf
			}
			continue
		}
		t := j.v.text[id]
		if t == "" || !j.allows(t) {
			logits[id] = ninf
		}
	}
}

// Accept implements scheduler.Constraint.
func (j *jsonConstraint) Accept(id int32) {
	if int(id) >= len(j.v.text) || j.v.eos[id] {
		return
	}
	for _, c := range []byte(j.v.text[id]) {
		j.st.feed(c)
	}
}

// jsonVocabulary builds (once) the token texts JSON mode checks.
func (s *Server) jsonVocabulary() (*jsonVocab, error) {
	s.jsonOnce.Do(func() {
		tok, err := s.model.Prompter.Tokenizer()
		if err != nil {
			s.jsonErr = err
			return
		}
		vocab := s.sched.Vocab()
		v := &jsonVocab{text: make([]string, vocab), eos: s.sched.Options().EOS}
		for id := range vocab {
			if tok.IsSpecial(int32(id)) {
				continue
			}
			v.text[id] = tok.Decode([]int32{int32(id)}, false)
		}
		s.jsonVocab = v
	})
	return s.jsonVocab, s.jsonErr
}

// jsonModeState is the server's lazily built JSON-mode vocabulary.
type jsonModeState struct {
	jsonOnce  sync.Once
	jsonVocab *jsonVocab
	jsonErr   error
}
