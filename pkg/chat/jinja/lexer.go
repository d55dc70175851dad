package jinja

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The lexer turns template source into segments — literal text, {{ … }}
// and {% … %} tags (comments disappear) — applying the whitespace rules of
// the environment transformers uses: trim_blocks, lstrip_blocks, the - and
// + modifiers, newline normalisation and keep_trailing_newline=False.

type tokKind int

const (
	tkName tokKind = iota
	tkString
	tkInt
	tkFloat
	tkOp
	tkEOF
)

type token struct {
	kind tokKind
	s    string // name, operator, or decoded string literal
	i    int64
	f    float64
	line int
}

func (t token) String() string {
	switch t.kind {
	case tkString:
		return strconv.Quote(t.s)
	case tkInt:
		return strconv.FormatInt(t.i, 10)
	case tkFloat:
		return strconv.FormatFloat(t.f, 'g', -1, 64)
	case tkEOF:
		return "end of tag"
	}
	return t.s
}

type segKind int

const (
	segText segKind = iota
	segVar
	segBlock
)

type segment struct {
	kind segKind
	text string  // segText
	toks []token // segVar, segBlock (without delimiters)
	line int
}

// maxSourceBytes bounds what Parse accepts; real chat templates are a few
// kilobytes.
const maxSourceBytes = 4 << 20

func lex(src string) ([]segment, error) {
	if len(src) > maxSourceBytes {
		return nil, &SyntaxError{Line: 1, Msg: fmt.Sprintf("template is %d bytes, more than the %d this engine accepts", len(src), maxSourceBytes)}
	}
	if !utf8.ValidString(src) {
		return nil, &SyntaxError{Line: 1, Msg: "template is not valid UTF-8"}
	}
	src = strings.ReplaceAll(src, "\r\n", "\n")
	src = strings.ReplaceAll(src, "\r", "\n")
	src = strings.TrimSuffix(src, "\n")
	l := &lexer{src: src, line: 1}
	if err := l.run(); err != nil {
		return nil, err
	}
	return l.segs, nil
}

type lexer struct {
	src  string
	pos  int
	line int
	segs []segment
}

func (l *lexer) errorf(format string, args ...any) error {
	return &SyntaxError{Line: l.line, Msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) advance(n int) {
	l.line += strings.Count(l.src[l.pos:l.pos+n], "\n")
	l.pos += n
}

func (l *lexer) run() error {
	for l.pos < len(l.src) {
		start := l.pos
		idx := nextTagStart(l.src[l.pos:])
		if idx < 0 {
			l.emitText(l.src[l.pos:], l.line)
			l.advance(len(l.src) - l.pos)
			return nil
		}
		text := l.src[l.pos : l.pos+idx]
		textLine := l.line
		l.advance(idx)
		kind := l.src[l.pos+1] // '{', '%' or '#'
		mod := byte(0)
		if l.pos+2 < len(l.src) && (l.src[l.pos+2] == '-' || l.src[l.pos+2] == '+') {
			mod = l.src[l.pos+2]
		}
		// Whitespace before the tag.
		switch {
		case mod == '-':
			text = strings.TrimRightFunc(text, unicode.IsSpace)
		case kind != '{' && mod != '+':
			lineStart := strings.LastIndexByte(text, '\n') + 1
			atLineStart := lineStart > 0 || start == 0 || l.src[start-1] == '\n'
			if atLineStart && lineStart < len(text) && strings.TrimLeft(text[lineStart:], " \t\v\f") == "" {
				text = text[:lineStart]
			}
		}
		l.emitText(text, textLine)
		tagLine := l.line
		open := 2
		if mod != 0 {
			open = 3
		}
		l.advance(open)
		switch kind {
		case '#':
			end := strings.Index(l.src[l.pos:], "#}")
			if end < 0 {
				return l.errorf("comment opened here is never closed")
			}
			rmod := byte(0)
			if end > 0 && (l.src[l.pos+end-1] == '-' || l.src[l.pos+end-1] == '+') {
				rmod = l.src[l.pos+end-1]
			}
			l.advance(end + 2)
			l.afterTag(rmod, true)
		case '{':
			toks, rmod, err := l.lexTag("}}")
			if err != nil {
				return err
			}
			l.segs = append(l.segs, segment{kind: segVar, toks: toks, line: tagLine})
			l.afterTag(rmod, false)
		case '%':
			toks, rmod, err := l.lexTag("%}")
			if err != nil {
				return err
			}
			l.segs = append(l.segs, segment{kind: segBlock, toks: toks, line: tagLine})
			l.afterTag(rmod, true)
			if len(toks) == 1 && toks[0].kind == tkName && toks[0].s == "raw" {
				if err := l.raw(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// nextTagStart finds the next "{{", "{%" or "{#".
func nextTagStart(s string) int {
	off := 0
	for {
		i := strings.IndexByte(s[off:], '{')
		if i < 0 || off+i+1 >= len(s) {
			return -1
		}
		switch s[off+i+1] {
		case '{', '%', '#':
			return off + i
		}
		off += i + 1
	}
}

func (l *lexer) emitText(s string, line int) {
	if s == "" {
		return
	}
	l.segs = append(l.segs, segment{kind: segText, text: s, line: line})
}

// afterTag applies the whitespace rule after a tag: "-" eats all following
// whitespace; trim_blocks eats one newline after a block or comment.
func (l *lexer) afterTag(rmod byte, block bool) {
	switch {
	case rmod == '-':
		rest := l.src[l.pos:]
		l.advance(len(rest) - len(strings.TrimLeftFunc(rest, unicode.IsSpace)))
	case rmod == '+' || !block:
	default:
		if strings.HasPrefix(l.src[l.pos:], "\n") {
			l.advance(1)
		}
	}
}

// raw copies everything up to {% endraw %} as text.
func (l *lexer) raw() error {
	rest := l.src[l.pos:]
	for off := 0; ; {
		i := strings.Index(rest[off:], "{%")
		if i < 0 {
			return l.errorf("raw block is never closed with endraw")
		}
		j := off + i + 2
		lmod := byte(0)
		if j < len(rest) && (rest[j] == '-' || rest[j] == '+') {
			lmod = rest[j]
			j++
		}
		k := j
		for k < len(rest) && (rest[k] == ' ' || rest[k] == '\t' || rest[k] == '\n') {
			k++
		}
		if !strings.HasPrefix(rest[k:], "endraw") {
			off = j
			continue
		}
		k += len("endraw")
		for k < len(rest) && (rest[k] == ' ' || rest[k] == '\t' || rest[k] == '\n') {
			k++
		}
		rmod := byte(0)
		if k < len(rest) && (rest[k] == '-' || rest[k] == '+') {
			rmod = rest[k]
			k++
		}
		if !strings.HasPrefix(rest[k:], "%}") {
			off = j
			continue
		}
		text := rest[:off+i]
		if lmod == '-' {
			text = strings.TrimRightFunc(text, unicode.IsSpace)
		}
		l.emitText(text, l.line)
		l.advance(k + 2)
		l.segs = append(l.segs, segment{kind: segBlock, toks: []token{{kind: tkName, s: "endraw", line: l.line}}, line: l.line})
		l.afterTag(rmod, true)
		return nil
	}
}

// lexTag tokenises the inside of a tag up to its closing delimiter (only
// at bracket depth zero, so dict literals may contain "}}").
func (l *lexer) lexTag(end string) ([]token, byte, error) {
	var toks []token
	depth := 0
	for {
		for l.pos < len(l.src) && isSpaceByte(l.src[l.pos]) {
			l.advance(1)
		}
		if l.pos >= len(l.src) {
			return nil, 0, l.errorf("tag is never closed with %q", end)
		}
		rest := l.src[l.pos:]
		if depth == 0 {
			if strings.HasPrefix(rest, end) {
				l.advance(2)
				return toks, 0, nil
			}
			if (rest[0] == '-' || rest[0] == '+') && strings.HasPrefix(rest[1:], end) {
				l.advance(3)
				return toks, rest[0], nil
			}
		}
		c := rest[0]
		line := l.line
		switch {
		case c == '_' || c < utf8.RuneSelf && unicode.IsLetter(rune(c)):
			n := 1
			for n < len(rest) && (rest[n] == '_' || rest[n] < utf8.RuneSelf && (unicode.IsLetter(rune(rest[n])) || unicode.IsDigit(rune(rest[n])))) {
				n++
			}
			toks = append(toks, token{kind: tkName, s: rest[:n], line: line})
			l.advance(n)
		case c >= '0' && c <= '9':
			t, n, err := lexNumber(rest)
			if err != nil {
				return nil, 0, l.errorf("%v", err)
			}
			t.line = line
			toks = append(toks, t)
			l.advance(n)
		case c == '\'' || c == '"':
			s, n, err := lexString(rest)
			if err != nil {
				return nil, 0, l.errorf("%v", err)
			}
			toks = append(toks, token{kind: tkString, s: s, line: line})
			l.advance(n)
		default:
			op := ""
			for _, cand := range []string{"//", "**", "==", "!=", ">=", "<="} {
				if strings.HasPrefix(rest, cand) {
					op = cand
					break
				}
			}
			if op == "" {
				if !strings.ContainsRune("+-*/%~<>=()[]{},.:|;!", rune(c)) {
					r, _ := utf8.DecodeRuneInString(rest)
					return nil, 0, l.errorf("unexpected character %q in tag", r)
				}
				op = rest[:1]
			}
			switch op {
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				if depth > 0 {
					depth--
				}
			}
			toks = append(toks, token{kind: tkOp, s: op, line: line})
			l.advance(len(op))
		}
	}
}

func isSpaceByte(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func lexNumber(s string) (token, int, error) {
	n := 0
	digits := func() {
		for n < len(s) && (s[n] >= '0' && s[n] <= '9' || s[n] == '_' && n+1 < len(s) && s[n+1] >= '0' && s[n+1] <= '9') {
			n++
		}
	}
	digits()
	isFloat := false
	if n+1 < len(s) && s[n] == '.' && s[n+1] >= '0' && s[n+1] <= '9' {
		isFloat = true
		n++
		digits()
	}
	if n < len(s) && (s[n] == 'e' || s[n] == 'E') {
		m := n + 1
		if m < len(s) && (s[m] == '+' || s[m] == '-') {
			m++
		}
		if m < len(s) && s[m] >= '0' && s[m] <= '9' {
			isFloat = true
			n = m
			digits()
		}
	}
	lit := strings.ReplaceAll(s[:n], "_", "")
	if isFloat {
		f, err := strconv.ParseFloat(lit, 64)
		if err != nil {
			return token{}, 0, fmt.Errorf("bad number %q", s[:n])
		}
		return token{kind: tkFloat, f: f}, n, nil
	}
	i, err := strconv.ParseInt(lit, 10, 64)
	if err != nil {
		return token{}, 0, fmt.Errorf("integer %s is out of range", s[:n])
	}
	return token{kind: tkInt, i: i}, n, nil
}

// lexString decodes a quoted literal with Python's escapes.
func lexString(s string) (string, int, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); {
		c := s[i]
		switch {
		case c == q:
			return b.String(), i + 1, nil
		case c == '\\' && i+1 < len(s):
			e := s[i+1]
			i += 2
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '\\', '\'', '"':
				b.WriteByte(e)
			case 'a':
				b.WriteByte(7)
			case 'b':
				b.WriteByte(8)
			case 'f':
				b.WriteByte(12)
			case 'v':
				b.WriteByte(11)
			case '\n':
				// line continuation
			case 'x', 'u', 'U':
				n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
				if i+n > len(s) {
					return "", 0, fmt.Errorf("truncated \\%c escape in string literal", e)
				}
				v, err := strconv.ParseUint(s[i:i+n], 16, 32)
				if err != nil || v > unicode.MaxRune {
					return "", 0, fmt.Errorf("bad \\%c escape in string literal", e)
				}
				b.WriteRune(rune(v))
				i += n
			case '0', '1', '2', '3', '4', '5', '6', '7':
				v := int(e - '0')
				for k := 0; k < 2 && i < len(s) && s[i] >= '0' && s[i] <= '7'; k++ {
					v = v*8 + int(s[i]-'0')
					i++
				}
				b.WriteRune(rune(v))
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", 0, fmt.Errorf("string literal is never closed")
}
