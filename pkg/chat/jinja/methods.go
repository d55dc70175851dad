package jinja

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// boundMethod is a Python method looked up on a value (str.split,
// dict.items, ...), called later with arguments.
type boundMethod struct {
	recv any
	name string
}

var strMethods = map[string]bool{
	"startswith": true, "endswith": true, "strip": true, "lstrip": true, "rstrip": true,
	"split": true, "rsplit": true, "upper": true, "lower": true, "title": true,
	"capitalize": true, "replace": true, "find": true, "rfind": true, "index": true,
	"rindex": true, "count": true, "join": true, "isdigit": true, "isalpha": true,
	"isalnum": true, "isspace": true, "isupper": true, "islower": true, "splitlines": true,
	"removeprefix": true, "removesuffix": true,
}

var dictMethods = map[string]bool{"get": true, "items": true, "keys": true, "values": true, "copy": true}

var listMethods = map[string]bool{"index": true, "count": true, "copy": true}

// Methods that mutate their receiver: the immutable sandbox transformers
// uses refuses them.
var (
	mutatingDict = map[string]bool{"update": true, "pop": true, "popitem": true, "setdefault": true, "clear": true}
	mutatingList = map[string]bool{"append": true, "extend": true, "insert": true, "pop": true, "remove": true, "reverse": true, "sort": true, "clear": true}
)

// unsupportedMethods are Python str methods this engine does not implement;
// a template that calls one is rejected at Parse.
var unsupportedMethods = map[string]bool{
	"format": true, "format_map": true, "encode": true, "expandtabs": true, "partition": true,
	"rpartition": true, "zfill": true, "ljust": true, "rjust": true, "center": true,
	"casefold": true, "swapcase": true, "translate": true, "maketrans": true, "isdecimal": true,
	"isnumeric": true, "isidentifier": true, "isprintable": true, "istitle": true, "isascii": true,
}

func lookupMethod(obj any, name string) (any, bool) {
	switch obj.(type) {
	case string:
		if strMethods[name] {
			return &boundMethod{recv: obj, name: name}, true
		}
	case *Dict:
		if dictMethods[name] {
			return &boundMethod{recv: obj, name: name}, true
		}
		if mutatingDict[name] {
			return Undefined{Name: name, unsafe: fmt.Sprintf("access to attribute '%s' of 'dict' object is unsafe.", name)}, true
		}
	case []any, Tuple:
		if listMethods[name] {
			return &boundMethod{recv: obj, name: name}, true
		}
		if _, isList := obj.([]any); isList && mutatingList[name] {
			return Undefined{Name: name, unsafe: fmt.Sprintf("access to attribute '%s' of 'list' object is unsafe.", name)}, true
		}
	}
	return nil, false
}

func callMethod(m *boundMethod, args []any, kw *Dict) (any, error) {
	switch recv := m.recv.(type) {
	case string:
		return callStrMethod(recv, m.name, args, kw)
	case *Dict:
		switch m.name {
		case "get":
			k := arg(args, kw, 0, "key", nil)
			def := arg(args, kw, 1, "default", nil)
			if ks, ok := k.(string); ok {
				if v, ok := recv.m[ks]; ok {
					return v, nil
				}
			}
			return def, nil
		case "items":
			return dictItems(recv), nil
		case "keys":
			out := make([]any, len(recv.keys))
			for i, k := range recv.keys {
				out[i] = k
			}
			return out, nil
		case "values":
			out := make([]any, len(recv.keys))
			for i, k := range recv.keys {
				out[i] = recv.m[k]
			}
			return out, nil
		case "copy":
			return recv.copyDict(), nil
		}
	case []any:
		return callSeqMethod(recv, m.name, args)
	case Tuple:
		return callSeqMethod(recv, m.name, args)
	}
	return nil, typeErrorf("'%s' object has no method '%s'", typeName(m.recv), m.name)
}

func callSeqMethod(xs []any, name string, args []any) (any, error) {
	switch name {
	case "index":
		if len(args) < 1 {
			return nil, typeErrorf("index expected at least 1 argument")
		}
		for i, x := range xs {
			if equal(x, args[0]) {
				return int64(i), nil
			}
		}
		return nil, valueErrorf("%s is not in list", repr(args[0]))
	case "count":
		if len(args) != 1 {
			return nil, typeErrorf("count takes exactly one argument")
		}
		n := int64(0)
		for _, x := range xs {
			if equal(x, args[0]) {
				n++
			}
		}
		return n, nil
	case "copy":
		return append([]any{}, xs...), nil
	}
	return nil, typeErrorf("list has no method '%s'", name)
}

func optChars(args []any, kw *Dict, i int, name string) (*string, error) {
	v := arg(args, kw, i, name, nil)
	if v == nil {
		return nil, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, typeErrorf("%s arg must be None or str", name)
	}
	return &s, nil
}

func callStrMethod(s, name string, args []any, kw *Dict) (any, error) {
	switch name {
	case "startswith", "endswith":
		if len(args) < 1 {
			return nil, typeErrorf("%s() takes at least 1 argument (0 given)", name)
		}
		sub := s
		if len(args) > 1 {
			lo, hi := any(nil), any(nil)
			lo = args[1]
			if len(args) > 2 {
				hi = args[2]
			}
			var idx [3]*int64
			if n, ok := asInt(lo); ok {
				idx[0] = &n
			}
			if n, ok := asInt(hi); ok {
				idx[1] = &n
			}
			rs := []rune(s)
			sel, _ := sliceIndices(len(rs), idx)
			out := make([]rune, len(sel))
			for i, j := range sel {
				out[i] = rs[j]
			}
			sub = string(out)
		}
		var cands []any
		switch p := args[0].(type) {
		case string:
			cands = []any{p}
		case Tuple:
			cands = p
		default:
			return nil, typeErrorf("%s first arg must be str or a tuple of str, not %s", name, typeName(args[0]))
		}
		for _, c := range cands {
			cs, ok := c.(string)
			if !ok {
				return nil, typeErrorf("tuple for %s must only contain str, not %s", name, typeName(c))
			}
			if name == "startswith" && strings.HasPrefix(sub, cs) || name == "endswith" && strings.HasSuffix(sub, cs) {
				return true, nil
			}
		}
		return false, nil
	case "strip", "lstrip", "rstrip":
		chars, err := optChars(args, kw, 0, "chars")
		if err != nil {
			return nil, err
		}
		return pyStrip(s, chars, name != "rstrip", name != "lstrip"), nil
	case "split", "rsplit":
		sep := arg(args, kw, 0, "sep", nil)
		maxv, _ := asInt(arg(args, kw, 1, "maxsplit", int64(-1)))
		var parts []string
		if sep == nil {
			parts = pySplitWhitespace(s, int(maxv), name == "rsplit")
		} else {
			sp, ok := sep.(string)
			if !ok {
				return nil, typeErrorf("must be str or None, not %s", typeName(sep))
			}
			if sp == "" {
				return nil, valueErrorf("empty separator")
			}
			if name == "split" || maxv < 0 {
				parts = strings.SplitN(s, sp, splitN(maxv))
			} else {
				parts = rsplitN(s, sp, int(maxv))
			}
		}
		out := make([]any, len(parts))
		for i, p := range parts {
			out[i] = p
		}
		return out, nil
	case "splitlines":
		keep := truthy(arg(args, kw, 0, "keepends", false))
		var out []any = []any{}
		for len(s) > 0 {
			i := strings.IndexAny(s, "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
			if i < 0 {
				out = append(out, s)
				break
			}
			r, n := utf8.DecodeRuneInString(s[i:])
			end := i + n
			if r == '\r' && strings.HasPrefix(s[end:], "\n") {
				end++
			}
			if keep {
				out = append(out, s[:end])
			} else {
				out = append(out, s[:i])
			}
			s = s[end:]
		}
		return out, nil
	case "upper":
		return strings.ToUpper(s), nil
	case "lower":
		return strings.ToLower(s), nil
	case "title":
		return pyTitle(s), nil
	case "capitalize":
		return pyCapitalize(s), nil
	case "replace":
		if len(args) < 2 {
			return nil, typeErrorf("replace expected at least 2 arguments, got %d", len(args))
		}
		old, ok1 := args[0].(string)
		nw, ok2 := args[1].(string)
		if !ok1 || !ok2 {
			return nil, typeErrorf("replace arguments must be str")
		}
		n := -1
		if len(args) > 2 {
			c, ok := asInt(args[2])
			if !ok {
				return nil, typeErrorf("replace count must be an int")
			}
			n = int(c)
		}
		return pyReplace(s, old, nw, n), nil
	case "find", "rfind", "index", "rindex", "count":
		if len(args) < 1 {
			return nil, typeErrorf("%s() takes at least 1 argument (0 given)", name)
		}
		sub, ok := args[0].(string)
		if !ok {
			return nil, typeErrorf("must be str, not %s", typeName(args[0]))
		}
		if name == "count" {
			if sub == "" {
				return int64(utf8.RuneCountInString(s) + 1), nil
			}
			return int64(strings.Count(s, sub)), nil
		}
		var b int
		if name == "find" || name == "index" {
			b = strings.Index(s, sub)
		} else {
			b = strings.LastIndex(s, sub)
		}
		if b < 0 {
			if name == "index" || name == "rindex" {
				return nil, valueErrorf("substring not found")
			}
			return int64(-1), nil
		}
		return int64(utf8.RuneCountInString(s[:b])), nil
	case "join":
		if len(args) != 1 {
			return nil, typeErrorf("join() takes exactly one argument")
		}
		items, err := iterate(args[0])
		if err != nil {
			return nil, err
		}
		parts := make([]string, len(items))
		for i, it := range items {
			p, ok := it.(string)
			if !ok {
				return nil, typeErrorf("sequence item %d: expected str instance, %s found", i, typeName(it))
			}
			parts[i] = p
		}
		return strings.Join(parts, s), nil
	case "removeprefix", "removesuffix":
		if len(args) != 1 {
			return nil, typeErrorf("%s() takes exactly one argument", name)
		}
		a, ok := args[0].(string)
		if !ok {
			return nil, typeErrorf("%s() argument must be str", name)
		}
		if name == "removeprefix" {
			return strings.TrimPrefix(s, a), nil
		}
		return strings.TrimSuffix(s, a), nil
	case "isdigit", "isalpha", "isalnum", "isspace", "isupper", "islower":
		return strPredicate(s, name), nil
	}
	return nil, typeErrorf("'str' object has no method '%s'", name)
}

func splitN(maxsplit int64) int {
	if maxsplit < 0 {
		return -1
	}
	return int(maxsplit) + 1
}

// rsplitN splits from the right at most n times.
func rsplitN(s, sep string, n int) []string {
	var out []string
	for n > 0 {
		i := strings.LastIndex(s, sep)
		if i < 0 {
			break
		}
		out = append(out, s[i+len(sep):])
		s = s[:i]
		n--
	}
	out = append(out, s)
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// pySplitWhitespace is str.split() without a separator.
func pySplitWhitespace(s string, maxsplit int, fromRight bool) []string {
	if maxsplit < 0 {
		f := strings.FieldsFunc(s, isPySpace)
		if f == nil {
			return []string{}
		}
		return f
	}
	if fromRight {
		var out []string
		s = strings.TrimRightFunc(s, isPySpace)
		for len(s) > 0 && maxsplit > 0 {
			i := strings.LastIndexFunc(s, isPySpace)
			if i < 0 {
				break
			}
			_, n := utf8.DecodeRuneInString(s[i:])
			out = append(out, s[i+n:])
			s = strings.TrimRightFunc(s[:i], isPySpace)
			maxsplit--
		}
		if s != "" {
			out = append(out, s)
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
		return out
	}
	out := []string{}
	s = strings.TrimLeftFunc(s, isPySpace)
	for len(s) > 0 {
		if maxsplit == 0 {
			out = append(out, s)
			break
		}
		i := strings.IndexFunc(s, isPySpace)
		if i < 0 {
			out = append(out, s)
			break
		}
		out = append(out, s[:i])
		s = strings.TrimLeftFunc(s[i:], isPySpace)
		maxsplit--
	}
	return out
}

func strPredicate(s, name string) bool {
	if s == "" {
		return false
	}
	cased := false
	for _, r := range s {
		switch name {
		case "isdigit":
			if !unicode.IsDigit(r) {
				return false
			}
		case "isalpha":
			if !unicode.IsLetter(r) {
				return false
			}
		case "isalnum":
			if !unicode.IsLetter(r) && !unicode.IsNumber(r) {
				return false
			}
		case "isspace":
			if !isPySpace(r) {
				return false
			}
		case "isupper":
			if unicode.IsLower(r) {
				return false
			}
			if unicode.IsUpper(r) {
				cased = true
			}
		case "islower":
			if unicode.IsUpper(r) {
				return false
			}
			if unicode.IsLower(r) {
				cased = true
			}
		}
	}
	if name == "isupper" || name == "islower" {
		return cased
	}
	return true
}
