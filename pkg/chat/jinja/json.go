package jinja

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// FromJSON decodes JSON into template values the way Python's json.loads
// does: objects keep their key order (*Dict, the last duplicate wins),
// integers stay int64 (float64 beyond that range), numbers with a fraction
// or exponent are float64. It accepts exactly what encoding/json accepts.
func FromJSON(data []byte) (any, error) {
	d := &jsonReader{s: data}
	d.space()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.space()
	if d.pos != len(d.s) {
		return nil, d.errorf("trailing data after the value")
	}
	return v, nil
}

const maxJSONDepth = 512

type jsonReader struct {
	s   []byte
	pos int
}

func (d *jsonReader) errorf(format string, args ...any) error {
	return fmt.Errorf("json: offset %d: %s", d.pos, fmt.Sprintf(format, args...))
}

func (d *jsonReader) space() {
	for d.pos < len(d.s) {
		switch d.s[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *jsonReader) value(depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, d.errorf("nesting deeper than %d", maxJSONDepth)
	}
	if d.pos >= len(d.s) {
		return nil, d.errorf("unexpected end of input")
	}
	switch c := d.s[d.pos]; {
	case c == '{':
		d.pos++
		obj := NewDict()
		d.space()
		if d.pos < len(d.s) && d.s[d.pos] == '}' {
			d.pos++
			return obj, nil
		}
		for {
			d.space()
			if d.pos >= len(d.s) || d.s[d.pos] != '"' {
				return nil, d.errorf("expected a string key")
			}
			k, err := d.str()
			if err != nil {
				return nil, err
			}
			d.space()
			if d.pos >= len(d.s) || d.s[d.pos] != ':' {
				return nil, d.errorf("expected ':'")
			}
			d.pos++
			d.space()
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			obj.Set(k, v)
			d.space()
			if d.pos < len(d.s) && d.s[d.pos] == ',' {
				d.pos++
				continue
			}
			if d.pos < len(d.s) && d.s[d.pos] == '}' {
				d.pos++
				return obj, nil
			}
			return nil, d.errorf("expected ',' or '}'")
		}
	case c == '[':
		d.pos++
		out := []any{}
		d.space()
		if d.pos < len(d.s) && d.s[d.pos] == ']' {
			d.pos++
			return out, nil
		}
		for {
			d.space()
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			d.space()
			if d.pos < len(d.s) && d.s[d.pos] == ',' {
				d.pos++
				continue
			}
			if d.pos < len(d.s) && d.s[d.pos] == ']' {
				d.pos++
				return out, nil
			}
			return nil, d.errorf("expected ',' or ']'")
		}
	case c == '"':
		return d.str()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	}
	return nil, d.errorf("unexpected character %q", d.s[d.pos])
}

func (d *jsonReader) literal(word string) error {
	if !bytes.HasPrefix(d.s[d.pos:], []byte(word)) {
		return d.errorf("bad literal")
	}
	d.pos += len(word)
	return nil
}

func (d *jsonReader) number() (any, error) {
	start := d.pos
	if d.s[d.pos] == '-' {
		d.pos++
	}
	digits := func() int {
		n := 0
		for d.pos < len(d.s) && d.s[d.pos] >= '0' && d.s[d.pos] <= '9' {
			d.pos++
			n++
		}
		return n
	}
	intStart := d.pos
	if digits() == 0 {
		return nil, d.errorf("bad number")
	}
	if d.s[intStart] == '0' && d.pos-intStart > 1 {
		return nil, d.errorf("number with a leading zero")
	}
	isFloat := false
	if d.pos < len(d.s) && d.s[d.pos] == '.' {
		d.pos++
		isFloat = true
		if digits() == 0 {
			return nil, d.errorf("bad fraction")
		}
	}
	if d.pos < len(d.s) && (d.s[d.pos] == 'e' || d.s[d.pos] == 'E') {
		d.pos++
		isFloat = true
		if d.pos < len(d.s) && (d.s[d.pos] == '+' || d.s[d.pos] == '-') {
			d.pos++
		}
		if digits() == 0 {
			return nil, d.errorf("bad exponent")
		}
	}
	lit := string(d.s[start:d.pos])
	if !isFloat {
		if i, err := strconv.ParseInt(lit, 10, 64); err == nil {
			return i, nil
		}
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return nil, d.errorf("number %s: %v", lit, err)
	}
	return f, nil
}

// str decodes a string literal at d.pos; invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func (d *jsonReader) str() (string, error) {
	d.pos++ // opening quote
	start := d.pos
	for d.pos < len(d.s) {
		c := d.s[d.pos]
		if c == '"' {
			s := d.s[start:d.pos]
			d.pos++
			if utf8.Valid(s) {
				return string(s), nil
			}
			return replaceInvalid(string(s)), nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
		d.pos++
	}
	var b strings.Builder
	b.Write(d.s[start:d.pos])
	for d.pos < len(d.s) {
		c := d.s[d.pos]
		switch {
		case c == '"':
			d.pos++
			return replaceInvalid(b.String()), nil
		case c < 0x20:
			return "", d.errorf("control character in string")
		case c == '\\':
			if d.pos+1 >= len(d.s) {
				return "", d.errorf("unterminated escape")
			}
			e := d.s[d.pos+1]
			d.pos += 2
			switch e {
			case '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				r, ok := d.hex4()
				if !ok {
					return "", d.errorf("bad \\u escape")
				}
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if d.pos+1 < len(d.s) && d.s[d.pos] == '\\' && d.s[d.pos+1] == 'u' {
						save := d.pos
						d.pos += 2
						if x, ok := d.hex4(); ok {
							r2 = x
						} else {
							d.pos = save
						}
						if r2 >= 0 {
							if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
								b.WriteRune(dec)
								continue
							}
							d.pos = save
						}
					}
					r = utf8.RuneError
				}
				b.WriteRune(r)
			default:
				return "", d.errorf("bad escape \\%c", e)
			}
		default:
			b.WriteByte(c)
			d.pos++
		}
	}
	return "", d.errorf("unterminated string")
}

// replaceInvalid replaces each invalid UTF-8 byte with U+FFFD, as
// encoding/json does.
func replaceInvalid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func (d *jsonReader) hex4() (rune, bool) {
	if d.pos+4 > len(d.s) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(d.s[d.pos:d.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	d.pos += 4
	return rune(v), true
}

// FromGo converts plain Go values (bool, string, numbers, []any, maps with
// string keys, json.RawMessage) into template values. Map keys are sorted so
// that renderings are deterministic.
func FromGo(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, string, int64, float64, *Dict, *Namespace, Undefined:
		return x, nil
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case float32:
		return float64(x), nil
	case json.RawMessage:
		return FromJSON(x)
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := FromGo(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sortStrings(keys)
		d := NewDict()
		for _, k := range keys {
			c, err := FromGo(x[k])
			if err != nil {
				return nil, err
			}
			d.Set(k, c)
		}
		return d, nil
	}
	return nil, fmt.Errorf("jinja: cannot convert %T to a template value", v)
}

// dumpOptions are the arguments of Python's json.dumps that transformers'
// tojson filter forwards.
type dumpOptions struct {
	ensureASCII bool
	indent      string // "" = no indentation
	hasIndent   bool
	itemSep     string
	keySep      string
	sortKeys    bool
}

// dumpJSON is Python's json.dumps(v, ...).
func dumpJSON(v any, o dumpOptions) (string, error) {
	var b strings.Builder
	if err := dumpValue(&b, v, o, 0); err != nil {
		return "", err
	}
	return b.String(), nil
}

func dumpValue(b *strings.Builder, v any, o dumpOptions, level int) error {
	if level > maxJSONDepth {
		return valueErrorf("Circular reference detected")
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		b.WriteString(pyFloat(x, true))
	case string:
		writeJSONString(b, x, o.ensureASCII)
	case []any:
		return dumpSeq(b, x, o, level)
	case Tuple:
		return dumpSeq(b, x, o, level)
	case *Dict:
		if x.Len() == 0 {
			b.WriteString("{}")
			return nil
		}
		keys := x.keys
		if o.sortKeys {
			keys = append([]string(nil), keys...)
			sortStrings(keys)
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			newline(b, o, level+1)
			writeJSONString(b, k, o.ensureASCII)
			b.WriteString(o.keySep)
			if err := dumpValue(b, x.m[k], o, level+1); err != nil {
				return err
			}
		}
		newline(b, o, level)
		b.WriteByte('}')
	default:
		return typeErrorf("Object of type %s is not JSON serializable", typeName(v))
	}
	return nil
}

func dumpSeq(b *strings.Builder, xs []any, o dumpOptions, level int) error {
	if len(xs) == 0 {
		b.WriteString("[]")
		return nil
	}
	b.WriteByte('[')
	for i, e := range xs {
		if i > 0 {
			b.WriteString(o.itemSep)
		}
		newline(b, o, level+1)
		if err := dumpValue(b, e, o, level+1); err != nil {
			return err
		}
	}
	newline(b, o, level)
	b.WriteByte(']')
	return nil
}

func newline(b *strings.Builder, o dumpOptions, level int) {
	if !o.hasIndent {
		return
	}
	b.WriteByte('\n')
	for range level {
		b.WriteString(o.indent)
	}
}

// writeJSONString escapes like Python's json encoder.
func writeJSONString(b *strings.Builder, s string, ascii bool) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r < 0x20:
				fmt.Fprintf(b, `\u%04x`, r)
			case ascii && r > 0x7e:
				if r > 0xffff {
					r -= 0x10000
					fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
				} else {
					fmt.Fprintf(b, `\u%04x`, r)
				}
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// sortStrings sorts by code point, as Python sorts str: byte order of UTF-8.
func sortStrings(s []string) { sort.Strings(s) }

// ToJSON is Python's json.dumps(v, ensure_ascii=False): ", " and ": "
// separators, key order kept.
func ToJSON(v any) (string, error) {
	return dumpJSON(v, dumpOptions{itemSep: ", ", keySep: ": "})
}
