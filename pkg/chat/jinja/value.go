package jinja

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Values are Go values standing for Python ones, because chat templates are
// written against Python semantics (str(), ==, truthiness, slicing):
//
//	nil        None
//	bool       bool
//	int64      int
//	float64    float
//	string     str
//	[]any      list (and tuple: Tuple)
//	*Dict      dict (insertion-ordered, string keys)
//	*Namespace namespace()
//	Undefined  jinja2.Undefined
//	*macro, *builtin, *boundMethod  callables
type (
	// Tuple is a Python tuple; it differs from a list only in how it prints.
	Tuple []any
	// Undefined is Jinja's undefined value; Name says what was looked up.
	Undefined struct {
		Name string
		// unsafe is set for attributes the immutable sandbox refuses: using
		// the value fails with a security error, as in jinja2.sandbox.
		unsafe string
	}
	// Namespace is the mutable object namespace() returns.
	Namespace struct{ attrs *Dict }
)

// Dict is an insertion-ordered map with string keys (JSON objects, template
// dict literals and namespace attributes).
type Dict struct {
	keys []string
	m    map[string]any
}

// NewDict returns an empty Dict.
func NewDict() *Dict { return &Dict{m: map[string]any{}} }

// Set stores v under k, keeping the first insertion position of k.
func (d *Dict) Set(k string, v any) {
	if _, ok := d.m[k]; !ok {
		d.keys = append(d.keys, k)
	}
	d.m[k] = v
}

// Get returns the value under k.
func (d *Dict) Get(k string) (any, bool) { v, ok := d.m[k]; return v, ok }

// Keys returns the keys in insertion order.
func (d *Dict) Keys() []string { return d.keys }

// Len is the number of entries.
func (d *Dict) Len() int { return len(d.keys) }

func (d *Dict) copyDict() *Dict {
	c := &Dict{keys: append([]string(nil), d.keys...), m: make(map[string]any, len(d.m))}
	for k, v := range d.m {
		c.m[k] = v
	}
	return c
}

func undef(name string) Undefined { return Undefined{Name: name} }

func isUndefined(v any) bool { _, ok := v.(Undefined); return ok }

// truthy is Python's bool(v).
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case Tuple:
		return len(x) > 0
	case *Dict:
		return x.Len() > 0
	case Undefined:
		return false
	}
	return true
}

// typeName is Python's type(v).__name__, for error messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []any:
		return "list"
	case Tuple:
		return "tuple"
	case *Dict:
		return "dict"
	case *Namespace:
		return "Namespace"
	case Undefined:
		return "Undefined"
	case *macro:
		return "Macro"
	case *builtin, *boundMethod:
		return "function"
	}
	return fmt.Sprintf("%T", v)
}

// str is Python's str(v) as Jinja prints it ({{ v }}, ~, |string).
func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case Undefined:
		return ""
	}
	var b strings.Builder
	writeRepr(&b, v, false)
	return b.String()
}

// repr is Python's repr(v).
func repr(v any) string {
	var b strings.Builder
	writeRepr(&b, v, true)
	return b.String()
}

func writeRepr(b *strings.Builder, v any, quote bool) {
	switch x := v.(type) {
	case nil:
		b.WriteString("None")
	case bool:
		if x {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		b.WriteString(pyFloat(x, false))
	case string:
		if quote {
			b.WriteString(pyQuote(x))
		} else {
			b.WriteString(x)
		}
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e, true)
		}
		b.WriteByte(']')
	case Tuple:
		b.WriteByte('(')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e, true)
		}
		if len(x) == 1 {
			b.WriteByte(',')
		}
		b.WriteByte(')')
	case *Dict:
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyQuote(k))
			b.WriteString(": ")
			writeRepr(b, x.m[k], true)
		}
		b.WriteByte('}')
	case *Namespace:
		b.WriteString("<Namespace ")
		writeRepr(b, x.attrs, true)
		b.WriteString(">")
	case Undefined:
		if !quote {
			return
		}
		b.WriteString("Undefined")
	case *macro:
		b.WriteString("<Macro '" + x.name + "'>")
	default:
		b.WriteString("<" + typeName(v) + ">")
	}
}

// pyQuote is Python's repr of a str: single quotes unless the text holds a
// single quote and no double quote.
func pyQuote(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r >= 0x80 && !isPrintable(r):
			switch {
			case r <= 0xff:
				fmt.Fprintf(&b, `\x%02x`, r)
			case r <= 0xffff:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				fmt.Fprintf(&b, `\U%08x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// isPrintable approximates Python's str.isprintable for non-ASCII runes:
// letters, marks, numbers, punctuation, symbols and the plain space.
func isPrintable(r rune) bool {
	if r == utf8.RuneError {
		return true
	}
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S) || r == ' '
}

// pyFloat formats f as Python's repr (json=false) or json.dumps (json=true).
func pyFloat(f float64, json bool) string {
	switch {
	case math.IsNaN(f):
		if json {
			return "NaN"
		}
		return "nan"
	case math.IsInf(f, 1):
		if json {
			return "Infinity"
		}
		return "inf"
	case math.IsInf(f, -1):
		if json {
			return "-Infinity"
		}
		return "-inf"
	}
	// Shortest round-trip digits, then Python's layout: fixed notation for
	// decimal exponents in [-4, 16), scientific otherwise.
	s := strconv.FormatFloat(f, 'e', -1, 64)
	mant, expStr, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(expStr)
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	digits := strings.Replace(mant, ".", "", 1)
	var out string
	if exp >= -4 && exp < 16 {
		if exp >= 0 {
			if len(digits) <= exp+1 {
				out = digits + strings.Repeat("0", exp+1-len(digits)) + ".0"
			} else {
				out = digits[:exp+1] + "." + digits[exp+1:]
			}
		} else {
			out = "0." + strings.Repeat("0", -exp-1) + digits
		}
	} else {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		sign := "+"
		if exp < 0 {
			sign = "-"
			exp = -exp
		}
		out = fmt.Sprintf("%se%s%02d", m, sign, exp)
	}
	if neg {
		out = "-" + out
	}
	return out
}

// equal is Python's ==.
func equal(a, b any) bool {
	if ua, ok := a.(Undefined); ok {
		_, ub := b.(Undefined)
		_ = ua
		return ub
	}
	if _, ok := b.(Undefined); ok {
		return false
	}
	if na, ok := number(a); ok {
		if nb, ok := number(b); ok {
			return na == nb
		}
		return false
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		return ok && seqEqual(x, y)
	case Tuple:
		y, ok := b.(Tuple)
		return ok && seqEqual(x, y)
	case *Dict:
		y, ok := b.(*Dict)
		if !ok || x.Len() != y.Len() {
			return false
		}
		for _, k := range x.keys {
			yv, ok := y.m[k]
			if !ok || !equal(x.m[k], yv) {
				return false
			}
		}
		return true
	}
	return a == b
}

func seqEqual(x, y []any) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if !equal(x[i], y[i]) {
			return false
		}
	}
	return true
}

// number converts bool, int and float to float64 for comparisons.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// compare is Python's ordering for numbers, strings and sequences; ok is
// false where Python raises TypeError.
func compare(a, b any) (int, bool) {
	if na, ok := number(a); ok {
		if nb, ok := number(b); ok {
			// Exact comparison for two ints beyond float precision.
			if ia, ok := a.(int64); ok {
				if ib, ok := b.(int64); ok {
					return cmpInt(ia, ib), true
				}
			}
			switch {
			case na < nb:
				return -1, true
			case na > nb:
				return 1, true
			}
			return 0, true
		}
		return 0, false
	}
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), true
		}
	case []any:
		if y, ok := b.([]any); ok {
			return compareSeq(x, y)
		}
	case Tuple:
		if y, ok := b.(Tuple); ok {
			return compareSeq(x, y)
		}
	}
	return 0, false
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compareSeq(x, y []any) (int, bool) {
	for i := 0; i < len(x) && i < len(y); i++ {
		if equal(x[i], y[i]) {
			continue
		}
		return compare(x[i], y[i])
	}
	return cmpInt(int64(len(x)), int64(len(y))), true
}

// length is Python's len(); ok is false for values without a length.
func length(v any) (int, bool) {
	switch x := v.(type) {
	case string:
		return utf8.RuneCountInString(x), true
	case []any:
		return len(x), true
	case Tuple:
		return len(x), true
	case *Dict:
		return x.Len(), true
	case Undefined:
		return 0, true
	}
	return 0, false
}

// iterate lists the items a for loop (or list()) sees: list items, dict
// keys, string characters; Undefined iterates as empty, like jinja2's.
func iterate(v any) ([]any, error) {
	switch x := v.(type) {
	case []any:
		return x, nil
	case Tuple:
		return x, nil
	case *Dict:
		out := make([]any, len(x.keys))
		for i, k := range x.keys {
			out[i] = k
		}
		return out, nil
	case string:
		out := make([]any, 0, len(x))
		for _, r := range x {
			out = append(out, string(r))
		}
		return out, nil
	case Undefined:
		if x.unsafe != "" {
			return nil, securityError(x.unsafe)
		}
		return nil, nil
	}
	return nil, typeErrorf("'%s' object is not iterable", typeName(v))
}

// sortValues sorts in place with Python ordering; incomparable values are a
// TypeError.
func sortValues(vs []any, key func(any) any, reverse bool) error {
	var err error
	sort.SliceStable(vs, func(i, j int) bool {
		a, b := vs[i], vs[j]
		if key != nil {
			a, b = key(a), key(b)
		}
		c, ok := compare(a, b)
		if !ok && err == nil {
			err = typeErrorf("'<' not supported between instances of '%s' and '%s'", typeName(a), typeName(b))
		}
		if reverse {
			return c > 0
		}
		return c < 0
	})
	return err
}
