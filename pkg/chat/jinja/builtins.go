package jinja

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ---- globals ------------------------------------------------------------------

// globals are the functions transformers' environment provides: Jinja's
// range/namespace/dict plus raise_exception and strftime_now.
var globals map[string]any

func init() {
	globals = map[string]any{
		"range":           &builtin{name: "range", fn: fnRange},
		"namespace":       &builtin{name: "namespace", fn: fnNamespace},
		"dict":            &builtin{name: "dict", fn: fnDict},
		"raise_exception": &builtin{name: "raise_exception", fn: fnRaise},
		"strftime_now":    &builtin{name: "strftime_now", fn: fnStrftimeNow},
	}
}

func globalNames() []string {
	out := make([]string, 0, len(globals))
	for k := range globals {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

const maxRange = 1 << 20

func fnRange(r *renderer, args []any, _ *Dict) (any, error) {
	var a [3]int64
	for i, v := range args {
		if i > 2 {
			return nil, typeErrorf("range expected at most 3 arguments, got %d", len(args))
		}
		n, ok := asInt(v)
		if !ok {
			return nil, typeErrorf("'%s' object cannot be interpreted as an integer", typeName(v))
		}
		a[i] = n
	}
	var start, stop, step int64 = 0, 0, 1
	switch len(args) {
	case 0:
		return nil, typeErrorf("range expected at least 1 argument, got 0")
	case 1:
		stop = a[0]
	case 2:
		start, stop = a[0], a[1]
	default:
		start, stop, step = a[0], a[1], a[2]
	}
	if step == 0 {
		return nil, valueErrorf("range() arg 3 must not be zero")
	}
	var out []any
	for i := start; (step > 0 && i < stop) || (step < 0 && i > stop); i += step {
		if len(out) >= maxRange {
			return nil, limitError(fmt.Sprintf("range() with more than %d items", maxRange))
		}
		if len(out)&1023 == 0 {
			if err := r.stepN(1024); err != nil {
				return nil, err
			}
		}
		out = append(out, i)
	}
	if out == nil {
		out = []any{}
	}
	return out, nil
}

func fnNamespace(_ *renderer, args []any, kw *Dict) (any, error) {
	ns := &Namespace{attrs: NewDict()}
	for _, a := range args {
		d, ok := a.(*Dict)
		if !ok {
			return nil, typeErrorf("namespace() positional argument must be a dict, not %s", typeName(a))
		}
		for _, k := range d.keys {
			ns.attrs.Set(k, d.m[k])
		}
	}
	if kw != nil {
		for _, k := range kw.keys {
			ns.attrs.Set(k, kw.m[k])
		}
	}
	return ns, nil
}

func fnDict(_ *renderer, args []any, kw *Dict) (any, error) {
	d := NewDict()
	for _, a := range args {
		src, ok := a.(*Dict)
		if !ok {
			return nil, typeErrorf("dict() positional argument must be a dict, not %s", typeName(a))
		}
		for _, k := range src.keys {
			d.Set(k, src.m[k])
		}
	}
	if kw != nil {
		for _, k := range kw.keys {
			d.Set(k, kw.m[k])
		}
	}
	return d, nil
}

func fnRaise(_ *renderer, args []any, _ *Dict) (any, error) {
	msg := ""
	if len(args) > 0 {
		msg = str(args[0])
	}
	return nil, &RaisedError{Message: msg}
}

func fnStrftimeNow(r *renderer, args []any, _ *Dict) (any, error) {
	if len(args) != 1 {
		return nil, typeErrorf("strftime_now() takes exactly one argument")
	}
	f, ok := args[0].(string)
	if !ok {
		return nil, typeErrorf("strftime() argument 1 must be str, not %s", typeName(args[0]))
	}
	return strftime(r.now, f), nil
}

// strftime implements the C/Python directives chat templates use.
func strftime(t time.Time, f string) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 == len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		switch f[i] {
		case 'Y':
			fmt.Fprintf(&b, "%d", t.Year())
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			fmt.Fprintf(&b, "%02d", h)
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'f':
			fmt.Fprintf(&b, "%06d", t.Nanosecond()/1000)
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'B':
			b.WriteString(t.Month().String())
		case 'b', 'h':
			b.WriteString(t.Month().String()[:3])
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'w':
			fmt.Fprintf(&b, "%d", int(t.Weekday()))
		case 'Z':
			name, _ := t.Zone()
			b.WriteString(name)
		case 'z':
			b.WriteString(t.Format("-0700"))
		case 'F':
			b.WriteString(t.Format("2006-01-02"))
		case 'T':
			b.WriteString(t.Format("15:04:05"))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(f[i])
		}
	}
	return b.String()
}

// ---- argument helpers --------------------------------------------------------

// arg returns positional argument i, else keyword name, else def.
func arg(args []any, kw *Dict, i int, name string, def any) any {
	if i < len(args) {
		return args[i]
	}
	if kw != nil {
		if v, ok := kw.m[name]; ok {
			return v
		}
	}
	return def
}

func argString(args []any, kw *Dict, i int, name string, def string) (string, error) {
	v := arg(args, kw, i, name, def)
	s, ok := v.(string)
	if !ok {
		return "", typeErrorf("argument '%s' must be str, not %s", name, typeName(v))
	}
	return s, nil
}

// ---- filters -----------------------------------------------------------------

type filterFunc func(r *renderer, v any, args []any, kw *Dict) (any, error)

var filters map[string]filterFunc

func init() {
	filters = map[string]filterFunc{
		"length":     fLength,
		"count":      fLength,
		"tojson":     fToJSON,
		"trim":       fTrim,
		"upper":      func(_ *renderer, v any, _ []any, _ *Dict) (any, error) { return strings.ToUpper(str(v)), nil },
		"lower":      func(_ *renderer, v any, _ []any, _ *Dict) (any, error) { return strings.ToLower(str(v)), nil },
		"title":      func(_ *renderer, v any, _ []any, _ *Dict) (any, error) { return jinjaTitle(str(v)), nil },
		"capitalize": func(_ *renderer, v any, _ []any, _ *Dict) (any, error) { return pyCapitalize(str(v)), nil },
		"join":       fJoin,
		"default":    fDefault,
		"d":          fDefault,
		"first":      fFirst,
		"last":       fLast,
		"list":       fList,
		"items":      fItems,
		"dictsort":   fDictsort,
		"string":     func(_ *renderer, v any, _ []any, _ *Dict) (any, error) { return str(v), nil },
		"int":        fInt,
		"float":      fFloat,
		"abs":        fAbs,
		"replace":    fReplace,
		"safe":       func(_ *renderer, v any, _ []any, _ *Dict) (any, error) { return v, nil },
		"escape":     func(_ *renderer, v any, _ []any, _ *Dict) (any, error) { return html.EscapeString(str(v)), nil },
		"e":          func(_ *renderer, v any, _ []any, _ *Dict) (any, error) { return html.EscapeString(str(v)), nil },
		"map":        fMap,
		"select":     func(r *renderer, v any, a []any, kw *Dict) (any, error) { return fSelect(r, v, a, kw, false, false) },
		"reject":     func(r *renderer, v any, a []any, kw *Dict) (any, error) { return fSelect(r, v, a, kw, true, false) },
		"selectattr": func(r *renderer, v any, a []any, kw *Dict) (any, error) { return fSelect(r, v, a, kw, false, true) },
		"rejectattr": func(r *renderer, v any, a []any, kw *Dict) (any, error) { return fSelect(r, v, a, kw, true, true) },
		"reverse":    fReverse,
		"sort":       fSort,
		"unique":     fUnique,
		"min":        func(r *renderer, v any, a []any, kw *Dict) (any, error) { return fMinMax(v, a, kw, -1) },
		"max":        func(r *renderer, v any, a []any, kw *Dict) (any, error) { return fMinMax(v, a, kw, 1) },
		"sum":        fSum,
		"round":      fRound,
		"indent":     fIndent,
		"attr":       fAttr,
		"wordcount": func(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
			return int64(len(strings.Fields(str(v)))), nil
		},
	}
}

func callFilter(r *renderer, name string, v any, args []any, kw *Dict) (any, error) {
	f, ok := filters[name]
	if !ok {
		return nil, &RenderError{Kind: "TemplateAssertionError", Msg: fmt.Sprintf("no filter named '%s'", name)}
	}
	if u, ok := v.(Undefined); ok && u.unsafe != "" {
		return nil, securityError(u.unsafe)
	}
	if n, ok := length(v); ok {
		if err := r.stepN(n); err != nil {
			return nil, err
		}
	}
	return f(r, v, args, kw)
}

func fLength(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	n, ok := length(v)
	if !ok {
		return nil, typeErrorf("object of type '%s' has no len()", typeName(v))
	}
	return int64(n), nil
}

// fToJSON is transformers' tojson: json.dumps(x, ensure_ascii=False,
// indent=None, separators=None, sort_keys=False), in that positional order.
func fToJSON(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	o := dumpOptions{}
	o.ensureASCII = truthy(arg(args, kw, 0, "ensure_ascii", false))
	switch ind := arg(args, kw, 1, "indent", nil).(type) {
	case nil:
	case int64:
		o.hasIndent = true
		if ind > 0 {
			o.indent = strings.Repeat(" ", int(min(ind, 64)))
		}
	case string:
		o.hasIndent, o.indent = true, ind
	default:
		return nil, typeErrorf("tojson indent must be an int or str, not %s", typeName(ind))
	}
	o.itemSep, o.keySep = ", ", ": "
	if o.hasIndent {
		o.itemSep = ","
	}
	if sep := arg(args, kw, 2, "separators", nil); sep != nil {
		seq, err := iterate(sep)
		if err != nil || len(seq) != 2 {
			return nil, valueErrorf("tojson separators must be a pair of strings")
		}
		a, ok1 := seq[0].(string)
		b, ok2 := seq[1].(string)
		if !ok1 || !ok2 {
			return nil, valueErrorf("tojson separators must be a pair of strings")
		}
		o.itemSep, o.keySep = a, b
	}
	o.sortKeys = truthy(arg(args, kw, 3, "sort_keys", false))
	return dumpJSON(v, o)
}

func fTrim(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	chars := arg(args, kw, 0, "chars", nil)
	if chars == nil {
		return pyStrip(str(v), nil, true, true), nil
	}
	cs, ok := chars.(string)
	if !ok {
		return nil, typeErrorf("strip arg must be None or str")
	}
	return pyStrip(str(v), &cs, true, true), nil
}

func fJoin(r *renderer, v any, args []any, kw *Dict) (any, error) {
	sep, err := argString(args, kw, 0, "d", "")
	if err != nil {
		return nil, err
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	attr := arg(args, kw, 1, "attribute", nil)
	parts := make([]string, len(items))
	for i, it := range items {
		if attr != nil {
			if it, err = getItem(it, attr); err != nil {
				return nil, err
			}
		}
		parts[i] = str(it)
	}
	return strings.Join(parts, sep), nil
}

func fDefault(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	def := arg(args, kw, 0, "default_value", "")
	boolean := truthy(arg(args, kw, 1, "boolean", false))
	if isUndefined(v) || boolean && !truthy(v) {
		return def, nil
	}
	return v, nil
}

func fFirst(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return undef("first"), nil
	}
	return items[0], nil
}

func fLast(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return undef("last"), nil
	}
	return items[len(items)-1], nil
}

func fList(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	return append([]any{}, items...), nil
}

func dictItems(d *Dict) []any {
	out := make([]any, len(d.keys))
	for i, k := range d.keys {
		out[i] = Tuple{k, d.m[k]}
	}
	return out
}

func fItems(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	switch x := v.(type) {
	case Undefined:
		return []any{}, nil
	case *Dict:
		return dictItems(x), nil
	}
	return nil, typeErrorf("Can only get item pairs from a mapping.")
}

func fDictsort(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	d, ok := v.(*Dict)
	if !ok {
		return nil, typeErrorf("You can only sort by either 'key' or 'value'")
	}
	caseSensitive := truthy(arg(args, kw, 0, "case_sensitive", false))
	by, _ := arg(args, kw, 1, "by", "key").(string)
	reverse := truthy(arg(args, kw, 2, "reverse", false))
	pos := 0
	switch by {
	case "key":
	case "value":
		pos = 1
	default:
		return nil, &RenderError{Kind: "FilterArgumentError", Msg: "You can only sort by either 'key' or 'value'"}
	}
	items := dictItems(d)
	err := sortValues(items, func(x any) any {
		k := x.(Tuple)[pos]
		if s, ok := k.(string); ok && !caseSensitive {
			return strings.ToLower(s)
		}
		return k
	}, reverse)
	return items, err
}

func fInt(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	def := arg(args, kw, 0, "default", int64(0))
	switch x := v.(type) {
	case int64:
		return x, nil
	case bool:
		n, _ := asInt(x)
		return n, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return def, nil
		}
		return int64(x), nil
	case string:
		s := strings.TrimSpace(strings.ReplaceAll(x, "_", ""))
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, nil
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return int64(f), nil
		}
	}
	return def, nil
}

func fFloat(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	def := arg(args, kw, 0, "default", 0.0)
	switch x := v.(type) {
	case float64:
		return x, nil
	case int64:
		return float64(x), nil
	case bool:
		n, _ := number(x)
		return n, nil
	case string:
		if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
			return f, nil
		}
	}
	return def, nil
}

func fAbs(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return -x, nil
		}
		return x, nil
	case float64:
		return math.Abs(x), nil
	case bool:
		n, _ := asInt(x)
		return n, nil
	}
	return nil, typeErrorf("bad operand type for abs(): '%s'", typeName(v))
}

func fReplace(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	old, err := argString(args, kw, 0, "old", "")
	if err != nil {
		return nil, err
	}
	nw, err := argString(args, kw, 1, "new", "")
	if err != nil {
		return nil, err
	}
	n := -1
	if c := arg(args, kw, 2, "count", nil); c != nil {
		ci, ok := asInt(c)
		if !ok {
			return nil, typeErrorf("replace count must be an int")
		}
		n = int(ci)
	}
	return pyReplace(str(v), old, nw, n), nil
}

func pyReplace(s, old, nw string, n int) string {
	if old == "" && n != 0 {
		// Python inserts new between every character (and at both ends).
		rs := []rune(s)
		var b strings.Builder
		count := 0
		for i := 0; i <= len(rs); i++ {
			if n < 0 || count < n {
				b.WriteString(nw)
				count++
			}
			if i < len(rs) {
				b.WriteRune(rs[i])
			}
		}
		return b.String()
	}
	return strings.Replace(s, old, nw, n)
}

func fMap(r *renderer, v any, args []any, kw *Dict) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(items))
	if kw != nil {
		if attr, ok := kw.m["attribute"]; ok {
			def, hasDef := kw.m["default"]
			for _, it := range items {
				x, err := attrPath(it, attr)
				if err != nil {
					return nil, err
				}
				if hasDef && isUndefined(x) {
					x = def
				}
				out = append(out, x)
			}
			return out, nil
		}
	}
	if len(args) == 0 {
		return nil, &RenderError{Kind: "FilterArgumentError", Msg: "map requires a filter argument"}
	}
	name, ok := args[0].(string)
	if !ok {
		return nil, typeErrorf("map filter name must be a string")
	}
	if _, ok := filters[name]; !ok {
		return nil, &RenderError{Kind: "TemplateRuntimeError", Msg: fmt.Sprintf("No filter named '%s' found.", name)}
	}
	for _, it := range items {
		x, err := callFilter(r, name, it, args[1:], nil)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

// attrPath resolves "a.b.0" the way jinja2's make_attrgetter does.
func attrPath(v any, attr any) (any, error) {
	s, ok := attr.(string)
	if !ok {
		return getItem(v, attr)
	}
	for _, part := range strings.Split(s, ".") {
		var key any = part
		if n, err := strconv.ParseInt(part, 10, 64); err == nil {
			key = n
		}
		var err error
		if v, err = getItem(v, key); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func fSelect(r *renderer, v any, args []any, kw *Dict, reject, byAttr bool) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	var attr any
	if byAttr {
		if len(args) == 0 {
			return nil, &RenderError{Kind: "FilterArgumentError", Msg: "Missing parameter for attribute name"}
		}
		attr, args = args[0], args[1:]
	}
	var test testFunc
	var targs []any
	if len(args) > 0 {
		name, ok := args[0].(string)
		if !ok {
			return nil, typeErrorf("test name must be a string")
		}
		if test, ok = tests[name]; !ok {
			return nil, &RenderError{Kind: "TemplateRuntimeError", Msg: fmt.Sprintf("No test named '%s' found.", name)}
		}
		targs = args[1:]
	}
	out := []any{}
	for _, it := range items {
		x := it
		if byAttr {
			if x, err = attrPath(it, attr); err != nil {
				return nil, err
			}
		}
		ok := truthy(x)
		if test != nil {
			if ok, err = test(x, targs); err != nil {
				return nil, err
			}
		}
		if ok != reject {
			out = append(out, it)
		}
	}
	return out, nil
}

func fReverse(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	if s, ok := v.(string); ok {
		rs := []rune(s)
		for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
			rs[i], rs[j] = rs[j], rs[i]
		}
		return string(rs), nil
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(items))
	for i, it := range items {
		out[len(items)-1-i] = it
	}
	return out, nil
}

func sortKey(caseSensitive bool, attr any) func(any) any {
	return func(x any) any {
		if attr != nil {
			x, _ = attrPath(x, attr)
		}
		if s, ok := x.(string); ok && !caseSensitive {
			return strings.ToLower(s)
		}
		return x
	}
}

func fSort(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	out := append([]any{}, items...)
	reverse := truthy(arg(args, kw, 0, "reverse", false))
	cs := truthy(arg(args, kw, 1, "case_sensitive", false))
	attr := arg(args, kw, 2, "attribute", nil)
	return out, sortValues(out, sortKey(cs, attr), reverse)
}

func fUnique(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	key := sortKey(truthy(arg(args, kw, 0, "case_sensitive", false)), arg(args, kw, 1, "attribute", nil))
	var out, seen []any
	for _, it := range items {
		k := key(it)
		dup := false
		for _, s := range seen {
			if equal(s, k) {
				dup = true
				break
			}
		}
		if !dup {
			seen = append(seen, k)
			out = append(out, it)
		}
	}
	if out == nil {
		out = []any{}
	}
	return out, nil
}

func fMinMax(v any, args []any, kw *Dict, sign int) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return undef(""), nil
	}
	key := sortKey(truthy(arg(args, kw, 0, "case_sensitive", false)), arg(args, kw, 1, "attribute", nil))
	best := items[0]
	for _, it := range items[1:] {
		c, ok := compare(key(it), key(best))
		if !ok {
			return nil, typeErrorf("'<' not supported between instances of '%s' and '%s'", typeName(it), typeName(best))
		}
		if c*sign > 0 {
			best = it
		}
	}
	return best, nil
}

func fSum(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	attr := arg(args, kw, 0, "attribute", nil)
	total := arg(args, kw, 1, "start", int64(0))
	for _, it := range items {
		if attr != nil {
			if it, err = attrPath(it, attr); err != nil {
				return nil, err
			}
		}
		if total, err = binary("+", total, it); err != nil {
			return nil, err
		}
	}
	return total, nil
}

func fRound(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	f, ok := number(v)
	if !ok {
		return nil, typeErrorf("type %s doesn't define __round__ method", typeName(v))
	}
	prec, _ := asInt(arg(args, kw, 0, "precision", int64(0)))
	method, _ := arg(args, kw, 1, "method", "common").(string)
	p := math.Pow(10, float64(prec))
	switch method {
	case "common":
		// Python's round(): halves go to the even neighbour.
		return math.RoundToEven(f*p) / p, nil
	case "ceil":
		return math.Ceil(f*p) / p, nil
	case "floor":
		return math.Floor(f*p) / p, nil
	}
	return nil, &RenderError{Kind: "FilterArgumentError", Msg: "method must be common, ceil or floor"}
}

func fIndent(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	width := arg(args, kw, 0, "width", int64(4))
	var pad string
	switch w := width.(type) {
	case int64:
		pad = strings.Repeat(" ", int(max(0, min(w, 256))))
	case string:
		pad = w
	default:
		return nil, typeErrorf("indent width must be an int or str")
	}
	first := truthy(arg(args, kw, 1, "first", false))
	blank := truthy(arg(args, kw, 2, "blank", false))
	s := str(v)
	nl := "\n"
	if strings.HasSuffix(s, "\n") {
		s = s[:len(s)-1]
	} else {
		nl = ""
	}
	lines := strings.Split(s, "\n")
	for i := 1; i < len(lines); i++ {
		if blank || strings.TrimSpace(lines[i]) != "" {
			lines[i] = pad + lines[i]
		}
	}
	out := strings.Join(lines, "\n") + nl
	if first {
		out = pad + out
	}
	return out, nil
}

func fAttr(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	name, err := argString(args, kw, 0, "name", "")
	if err != nil {
		return nil, err
	}
	return getAttr(v, name)
}

// jinjaTitle is Jinja's title filter: capitalise each word, where words
// start after whitespace, '-', '(', '{', '[' or '<'.
func jinjaTitle(s string) string {
	var b strings.Builder
	start := true
	for _, r := range s {
		if unicode.IsSpace(r) || strings.ContainsRune("-({[<", r) {
			b.WriteRune(r)
			start = true
			continue
		}
		if start {
			b.WriteString(strings.ToUpper(string(r)))
		} else {
			b.WriteString(strings.ToLower(string(r)))
		}
		start = false
	}
	return b.String()
}

func pyCapitalize(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return strings.ToUpper(string(r)) + strings.ToLower(s[n:])
}

// pyTitle is Python's str.title.
func pyTitle(s string) string {
	var b strings.Builder
	prevCased := false
	for _, r := range s {
		if unicode.IsLetter(r) {
			if prevCased {
				b.WriteRune(unicode.ToLower(r))
			} else {
				b.WriteRune(unicode.ToUpper(r))
			}
			prevCased = true
		} else {
			b.WriteRune(r)
			prevCased = false
		}
	}
	return b.String()
}

// isPySpace is Python's str.isspace for one rune.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f
}

// pyStrip is Python's str.strip/lstrip/rstrip; chars nil means whitespace.
func pyStrip(s string, chars *string, left, right bool) string {
	in := isPySpace
	if chars != nil {
		set := *chars
		in = func(r rune) bool { return strings.ContainsRune(set, r) }
	}
	if left {
		s = strings.TrimLeftFunc(s, in)
	}
	if right {
		s = strings.TrimRightFunc(s, in)
	}
	return s
}

// ---- tests -------------------------------------------------------------------

type testFunc func(v any, args []any) (bool, error)

var tests map[string]testFunc

func init() {
	cmpTest := func(op string) testFunc {
		return func(v any, args []any) (bool, error) {
			if len(args) != 1 {
				return false, typeErrorf("test takes exactly one argument")
			}
			return compareOp(op, v, args[0])
		}
	}
	tests = map[string]testFunc{
		"defined":   func(v any, _ []any) (bool, error) { return !isUndefined(v), nil },
		"undefined": func(v any, _ []any) (bool, error) { return isUndefined(v), nil },
		"none":      func(v any, _ []any) (bool, error) { return v == nil, nil },
		"boolean":   func(v any, _ []any) (bool, error) { _, ok := v.(bool); return ok, nil },
		"true":      func(v any, _ []any) (bool, error) { b, ok := v.(bool); return ok && b, nil },
		"false":     func(v any, _ []any) (bool, error) { b, ok := v.(bool); return ok && !b, nil },
		"string":    func(v any, _ []any) (bool, error) { _, ok := v.(string); return ok, nil },
		"number":    func(v any, _ []any) (bool, error) { _, ok := number(v); return ok, nil },
		"integer":   func(v any, _ []any) (bool, error) { _, ok := v.(int64); return ok, nil },
		"float":     func(v any, _ []any) (bool, error) { _, ok := v.(float64); return ok, nil },
		"mapping":   func(v any, _ []any) (bool, error) { _, ok := v.(*Dict); return ok, nil },
		"iterable": func(v any, _ []any) (bool, error) {
			switch v.(type) {
			case string, []any, Tuple, *Dict, Undefined:
				return true, nil
			}
			return false, nil
		},
		"sequence": func(v any, _ []any) (bool, error) {
			switch v.(type) {
			case string, []any, Tuple, *Dict, Undefined:
				return true, nil
			}
			return false, nil
		},
		"callable": func(v any, _ []any) (bool, error) {
			switch v.(type) {
			case *macro, *builtin, *boundMethod:
				return true, nil
			}
			return false, nil
		},
		"even": func(v any, _ []any) (bool, error) {
			n, ok := asInt(v)
			if !ok {
				return false, typeErrorf("even test needs an integer, not %s", typeName(v))
			}
			return n%2 == 0, nil
		},
		"odd": func(v any, _ []any) (bool, error) {
			n, ok := asInt(v)
			if !ok {
				return false, typeErrorf("odd test needs an integer, not %s", typeName(v))
			}
			return n%2 != 0, nil
		},
		"divisibleby": func(v any, args []any) (bool, error) {
			if len(args) != 1 {
				return false, typeErrorf("divisibleby takes one argument")
			}
			m, err := arith("%", v, args[0])
			if err != nil {
				return false, err
			}
			f, _ := number(m)
			return f == 0, nil
		},
		"eq": cmpTest("=="), "equalto": cmpTest("=="), "==": cmpTest("=="),
		"ne": cmpTest("!="), "!=": cmpTest("!="),
		"lt": cmpTest("<"), "lessthan": cmpTest("<"), "<": cmpTest("<"),
		"le": cmpTest("<="), "<=": cmpTest("<="),
		"gt": cmpTest(">"), "greaterthan": cmpTest(">"), ">": cmpTest(">"),
		"ge": cmpTest(">="), ">=": cmpTest(">="),
		"in": func(v any, args []any) (bool, error) {
			if len(args) != 1 {
				return false, typeErrorf("in test takes one argument")
			}
			return contains(args[0], v)
		},
		"lower": func(v any, _ []any) (bool, error) {
			s := str(v)
			return s == strings.ToLower(s) && s != strings.ToUpper(s), nil
		},
		"upper": func(v any, _ []any) (bool, error) {
			s := str(v)
			return s == strings.ToUpper(s) && s != strings.ToLower(s), nil
		},
		"sameas": func(v any, args []any) (bool, error) {
			if len(args) != 1 {
				return false, typeErrorf("sameas takes one argument")
			}
			switch a := args[0].(type) {
			case nil, bool:
				return v == a, nil
			}
			return sameObject(v, args[0]), nil
		},
		"escaped": func(any, []any) (bool, error) { return false, nil },
	}
}

func sameObject(a, b any) bool {
	switch x := a.(type) {
	case *Dict:
		y, ok := b.(*Dict)
		return ok && x == y
	case *Namespace:
		y, ok := b.(*Namespace)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		return ok && len(x) == len(y) && (len(x) == 0 || &x[0] == &y[0])
	}
	return equal(a, b)
}
