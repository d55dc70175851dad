package jinja

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Template is a parsed template, safe for concurrent Render calls.
type Template struct {
	body []node
}

// Parse parses src. Constructs this engine does not implement (unknown
// filters, tests, functions or methods, include/import/extends, call
// blocks, recursive loops) are reported here as *SyntaxError.
func Parse(src string) (*Template, error) {
	body, err := parse(src)
	if err != nil {
		return nil, err
	}
	return &Template{body: body}, nil
}

// Limits bound the work of one render, so that a hostile template cannot
// hang or exhaust a server.
type Limits struct {
	MaxOutput int // bytes of output (default 64 MiB)
	MaxSteps  int // statements and loop iterations executed (default 10 million)
	MaxDepth  int // nested macro calls (default 200)
}

// RenderOptions are per-render settings.
type RenderOptions struct {
	// Now is what strftime_now formats; the zero value means time.Now().
	Now    time.Time
	Limits Limits
}

// Render evaluates the template with the given top-level variables.
func (t *Template) Render(vars map[string]any, opts RenderOptions) (string, error) {
	lim := opts.Limits
	if lim.MaxOutput <= 0 {
		lim.MaxOutput = 64 << 20
	}
	if lim.MaxSteps <= 0 {
		lim.MaxSteps = 10_000_000
	}
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = 200
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	root := &frame{vars: map[string]any{}}
	for k, v := range vars {
		c, err := FromGo(v)
		if err != nil {
			return "", fmt.Errorf("variable %s: %w", k, err)
		}
		root.vars[k] = c
	}
	r := &renderer{lim: lim, now: now}
	var out strings.Builder
	r.out = &out
	if err := r.execBody(t.body, root); err != nil {
		if errors.Is(err, errBreak) || errors.Is(err, errContinue) {
			return "", &RenderError{Kind: "TemplateSyntaxError", Msg: "break or continue outside a loop"}
		}
		return "", err
	}
	return out.String(), nil
}

type frame struct {
	vars   map[string]any
	parent *frame
}

func (f *frame) lookup(name string) (any, bool) {
	for ; f != nil; f = f.parent {
		if v, ok := f.vars[name]; ok {
			return v, true
		}
	}
	return nil, false
}

type renderer struct {
	out   *strings.Builder
	lim   Limits
	steps int
	depth int
	now   time.Time
}

var (
	errBreak    = errors.New("break")
	errContinue = errors.New("continue")
)

func (r *renderer) step() error { return r.stepN(1) }

// stepN charges n units of work: statements, loop iterations, and items or
// kilobytes that builtins produce, so that every render is bounded.
func (r *renderer) stepN(n int) error {
	r.steps += n
	if r.steps > r.lim.MaxSteps {
		return limitError(fmt.Sprintf("template executed more than %d steps", r.lim.MaxSteps))
	}
	return nil
}

// checkSize bounds values built by concatenation, so that doubling a
// string or list in a loop fails cleanly instead of exhausting memory.
func (r *renderer) checkSize(v any) error {
	switch x := v.(type) {
	case string:
		if err := r.stepN(len(x) >> 10); err != nil {
			return err
		}
		if len(x) > r.lim.MaxOutput {
			return limitError(fmt.Sprintf("string of %d bytes exceeds the output limit", len(x)))
		}
	case []any:
		if err := r.stepN(len(x)); err != nil {
			return err
		}
		if len(x) > maxRange {
			return limitError(fmt.Sprintf("list of %d items exceeds %d", len(x), maxRange))
		}
	case Tuple:
		if len(x) > maxRange {
			return limitError(fmt.Sprintf("tuple of %d items exceeds %d", len(x), maxRange))
		}
	}
	return nil
}

func (r *renderer) write(s string) error {
	if r.out.Len()+len(s) > r.lim.MaxOutput {
		return limitError(fmt.Sprintf("template output exceeds %d bytes", r.lim.MaxOutput))
	}
	r.out.WriteString(s)
	return nil
}

func withLine(err error, line int) error {
	var re *RenderError
	if errors.As(err, &re) && re.Line == 0 {
		re.Line = line
	}
	return err
}

func (r *renderer) execBody(body []node, f *frame) error {
	for _, n := range body {
		if err := r.step(); err != nil {
			return err
		}
		if err := r.exec(n, f); err != nil {
			return err
		}
	}
	return nil
}

func (r *renderer) exec(n node, f *frame) error {
	switch n := n.(type) {
	case *textNode:
		return r.write(n.s)
	case *outputNode:
		v, err := r.eval(n.e, f)
		if err != nil {
			return withLine(err, n.e.exprLine())
		}
		if u, ok := v.(Undefined); ok && u.unsafe != "" {
			return securityError(u.unsafe)
		}
		return r.write(str(v))
	case *ifNode:
		for i, c := range n.conds {
			v, err := r.eval(c, f)
			if err != nil {
				return withLine(err, c.exprLine())
			}
			if truthy(v) {
				return r.execBody(n.bodies[i], f)
			}
		}
		return r.execBody(n.els, f)
	case *forNode:
		return withLine(r.execFor(n, f), n.line)
	case *setNode:
		return withLine(r.execSet(n, f), n.line)
	case *macroNode:
		f.vars[n.name] = &macro{node: n, closure: f, name: n.name}
		return nil
	case *loopCtlNode:
		if n.brk {
			return errBreak
		}
		return errContinue
	case *filterBlockNode:
		if len(n.fl) == 0 {
			return r.execBody(n.body, f)
		}
		s, err := r.capture(n.body, f)
		if err != nil {
			return err
		}
		v, err := r.applyFilters(s, n.fl, f)
		if err != nil {
			return err
		}
		return r.write(str(v))
	}
	return fmt.Errorf("jinja: unknown node %T", n)
}

// capture renders body into a string.
func (r *renderer) capture(body []node, f *frame) (string, error) {
	saved := r.out
	var b strings.Builder
	r.out = &b
	err := r.execBody(body, f)
	r.out = saved
	if err != nil {
		return "", err
	}
	if saved.Len()+b.Len() > r.lim.MaxOutput {
		return "", limitError(fmt.Sprintf("template output exceeds %d bytes", r.lim.MaxOutput))
	}
	return b.String(), nil
}

func (r *renderer) applyFilters(v any, fl []*filterExpr, f *frame) (any, error) {
	for _, fe := range fl {
		args, kw, err := r.evalArgs(fe.args, fe.kwKeys, fe.kwVals, f)
		if err != nil {
			return nil, err
		}
		if v, err = callFilter(r, fe.name, v, args, kw); err != nil {
			return nil, withLine(err, fe.line)
		}
		if err := r.checkSize(v); err != nil {
			return nil, withLine(err, fe.line)
		}
	}
	return v, nil
}

type loopInfo struct {
	items []any
	index int
}

func (r *renderer) execFor(n *forNode, f *frame) error {
	iv, err := r.eval(n.iter, f)
	if err != nil {
		return err
	}
	all, err := iterate(iv)
	if err != nil {
		return err
	}
	items := all
	if n.cond != nil {
		items = nil
		for _, it := range all {
			tf := &frame{vars: map[string]any{}, parent: f}
			if err := bindTargets(tf, n.targets, it); err != nil {
				return err
			}
			c, err := r.eval(n.cond, tf)
			if err != nil {
				return err
			}
			if truthy(c) {
				items = append(items, it)
			}
		}
	}
	if len(items) == 0 {
		return r.execBody(n.els, f)
	}
	li := &loopInfo{items: items}
	for i, it := range items {
		if err := r.step(); err != nil {
			return err
		}
		li.index = i
		lf := &frame{vars: map[string]any{"loop": li}, parent: f}
		if err := bindTargets(lf, n.targets, it); err != nil {
			return err
		}
		err := r.execBody(n.body, lf)
		if errors.Is(err, errBreak) {
			break
		}
		if err != nil && !errors.Is(err, errContinue) {
			return err
		}
	}
	return nil
}

func bindTargets(f *frame, targets []string, it any) error {
	if len(targets) == 1 {
		f.vars[targets[0]] = it
		return nil
	}
	seq, err := iterate(it)
	if err != nil {
		return typeErrorf("cannot unpack non-iterable %s object", typeName(it))
	}
	if len(seq) != len(targets) {
		if len(seq) < len(targets) {
			return valueErrorf("not enough values to unpack (expected %d, got %d)", len(targets), len(seq))
		}
		return valueErrorf("too many values to unpack (expected %d)", len(targets))
	}
	for i, t := range targets {
		f.vars[t] = seq[i]
	}
	return nil
}

func (r *renderer) execSet(n *setNode, f *frame) error {
	var v any
	if n.body != nil || n.e == nil {
		s, err := r.capture(n.body, f)
		if err != nil {
			return err
		}
		v = s
		if len(n.fl) > 0 {
			if v, err = r.applyFilters(v, n.fl, f); err != nil {
				return err
			}
		}
	} else {
		var err error
		if v, err = r.eval(n.e, f); err != nil {
			return err
		}
	}
	if n.ns != "" {
		obj, ok := f.lookup(n.ns)
		ns, isNS := obj.(*Namespace)
		if !ok || !isNS {
			return &RenderError{Kind: "TemplateRuntimeError", Msg: "cannot assign attribute on non-namespace object"}
		}
		ns.attrs.Set(n.attr, v)
		return nil
	}
	if len(n.names) == 1 {
		f.vars[n.names[0]] = v
		return nil
	}
	return bindTargets(f, n.names, v)
}

// ---- expressions ----------------------------------------------------------

func (r *renderer) eval(e expr, f *frame) (any, error) {
	switch e := e.(type) {
	case *constExpr:
		return e.v, nil
	case *nameExpr:
		if v, ok := f.lookup(e.name); ok {
			return v, nil
		}
		if g, ok := globals[e.name]; ok {
			return g, nil
		}
		return undef(e.name), nil
	case *listExpr:
		out := make([]any, len(e.items))
		for i, it := range e.items {
			v, err := r.eval(it, f)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		if e.tuple {
			return Tuple(out), nil
		}
		return out, nil
	case *dictExpr:
		d := NewDict()
		for i := range e.keys {
			k, err := r.eval(e.keys[i], f)
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, typeErrorf("dict keys other than strings are not supported (got %s)", typeName(k))
			}
			v, err := r.eval(e.vals[i], f)
			if err != nil {
				return nil, err
			}
			d.Set(ks, v)
		}
		return d, nil
	case *attrExpr:
		obj, err := r.eval(e.obj, f)
		if err != nil {
			return nil, err
		}
		return getAttr(obj, e.name)
	case *itemExpr:
		obj, err := r.eval(e.obj, f)
		if err != nil {
			return nil, err
		}
		key, err := r.eval(e.key, f)
		if err != nil {
			return nil, err
		}
		return getItem(obj, key)
	case *sliceExpr:
		return r.evalSlice(e, f)
	case *callExpr:
		fn, err := r.eval(e.fn, f)
		if err != nil {
			return nil, err
		}
		args, kw, err := r.evalArgs(e.args, e.kwKeys, e.kwVals, f)
		if err != nil {
			return nil, err
		}
		v, err := r.call(fn, args, kw)
		if err != nil {
			return nil, err
		}
		return v, r.checkSize(v)
	case *filterExpr:
		v, err := r.eval(e.val, f)
		if err != nil {
			return nil, err
		}
		return r.applyFilters(v, []*filterExpr{{name: e.name, args: e.args, kwKeys: e.kwKeys, kwVals: e.kwVals, line: e.line}}, f)
	case *testExpr:
		v, err := r.eval(e.val, f)
		if err != nil {
			return nil, err
		}
		args, _, err := r.evalArgs(e.args, nil, nil, f)
		if err != nil {
			return nil, err
		}
		ok, err := tests[e.name](v, args)
		if err != nil {
			return nil, err
		}
		return ok != e.negate, nil
	case *unaryExpr:
		x, err := r.eval(e.x, f)
		if err != nil {
			return nil, err
		}
		switch e.op {
		case "not":
			return !truthy(x), nil
		case "-":
			switch v := x.(type) {
			case int64:
				return -v, nil
			case float64:
				return -v, nil
			case bool:
				if v {
					return int64(-1), nil
				}
				return int64(0), nil
			case Undefined:
				return nil, undefinedError(v)
			}
			return nil, typeErrorf("bad operand type for unary -: '%s'", typeName(x))
		default:
			switch v := x.(type) {
			case int64, float64:
				return v, nil
			case bool:
				if v {
					return int64(1), nil
				}
				return int64(0), nil
			case Undefined:
				return nil, undefinedError(v)
			}
			return nil, typeErrorf("bad operand type for unary +: '%s'", typeName(x))
		}
	case *condExpr:
		c, err := r.eval(e.test, f)
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return r.eval(e.a, f)
		}
		if e.b == nil {
			return undef(""), nil
		}
		return r.eval(e.b, f)
	case *binExpr:
		if e.op == "and" || e.op == "or" {
			l, err := r.eval(e.l, f)
			if err != nil {
				return nil, err
			}
			if truthy(l) == (e.op == "or") {
				return l, nil
			}
			return r.eval(e.r, f)
		}
		l, err := r.eval(e.l, f)
		if err != nil {
			return nil, err
		}
		rv, err := r.eval(e.r, f)
		if err != nil {
			return nil, err
		}
		v, err := binary(e.op, l, rv)
		if err != nil {
			return nil, err
		}
		return v, r.checkSize(v)
	case *compareExpr:
		l, err := r.eval(e.first, f)
		if err != nil {
			return nil, err
		}
		for i, op := range e.ops {
			rv, err := r.eval(e.rest[i], f)
			if err != nil {
				return nil, err
			}
			ok, err := compareOp(op, l, rv)
			if err != nil {
				return nil, err
			}
			if !ok {
				return false, nil
			}
			l = rv
		}
		return true, nil
	}
	return nil, fmt.Errorf("jinja: unknown expression %T", e)
}

func (r *renderer) evalArgs(args []expr, kwKeys []string, kwVals []expr, f *frame) ([]any, *Dict, error) {
	out := make([]any, len(args))
	for i, a := range args {
		v, err := r.eval(a, f)
		if err != nil {
			return nil, nil, err
		}
		out[i] = v
	}
	var kw *Dict
	if len(kwKeys) > 0 {
		kw = NewDict()
		for i, k := range kwKeys {
			v, err := r.eval(kwVals[i], f)
			if err != nil {
				return nil, nil, err
			}
			kw.Set(k, v)
		}
	}
	return out, kw, nil
}

func (r *renderer) evalSlice(e *sliceExpr, f *frame) (any, error) {
	obj, err := r.eval(e.obj, f)
	if err != nil {
		return nil, err
	}
	var idx [3]*int64
	for i, x := range []expr{e.lo, e.hi, e.step} {
		if x == nil {
			continue
		}
		v, err := r.eval(x, f)
		if err != nil {
			return nil, err
		}
		switch n := v.(type) {
		case nil:
		case int64:
			idx[i] = &n
		case bool:
			b := int64(0)
			if n {
				b = 1
			}
			idx[i] = &b
		default:
			return nil, typeErrorf("slice indices must be integers or None")
		}
	}
	switch x := obj.(type) {
	case []any:
		sel, err := sliceIndices(len(x), idx)
		if err != nil {
			return nil, err
		}
		out := make([]any, len(sel))
		for i, j := range sel {
			out[i] = x[j]
		}
		return out, nil
	case Tuple:
		sel, err := sliceIndices(len(x), idx)
		if err != nil {
			return nil, err
		}
		out := make(Tuple, len(sel))
		for i, j := range sel {
			out[i] = x[j]
		}
		return out, nil
	case string:
		rs := []rune(x)
		sel, err := sliceIndices(len(rs), idx)
		if err != nil {
			return nil, err
		}
		out := make([]rune, len(sel))
		for i, j := range sel {
			out[i] = rs[j]
		}
		return string(out), nil
	case Undefined:
		return nil, undefinedError(x)
	}
	return undef(""), nil
}

// sliceIndices is Python's slice.indices expanded to the selected positions.
func sliceIndices(n int, idx [3]*int64) ([]int, error) {
	step := int64(1)
	if idx[2] != nil {
		step = *idx[2]
		if step == 0 {
			return nil, valueErrorf("slice step cannot be zero")
		}
	}
	ln := int64(n)
	clamp := func(p *int64, def int64) int64 {
		if p == nil {
			return def
		}
		v := *p
		if v < 0 {
			v += ln
			if v < 0 {
				if step < 0 {
					return -1
				}
				return 0
			}
		} else if v >= ln {
			if step < 0 {
				return ln - 1
			}
			return ln
		}
		return v
	}
	var lo, hi int64
	if step > 0 {
		lo, hi = clamp(idx[0], 0), clamp(idx[1], ln)
	} else {
		lo, hi = clamp(idx[0], ln-1), clamp(idx[1], -1)
	}
	var out []int
	if step > 0 {
		for i := lo; i < hi; i += step {
			out = append(out, int(i))
		}
	} else {
		for i := lo; i > hi; i += step {
			out = append(out, int(i))
		}
	}
	return out, nil
}

func binary(op string, l, r any) (any, error) {
	if op == "~" {
		return str(l) + str(r), nil
	}
	if u, ok := l.(Undefined); ok {
		return nil, undefinedError(u)
	}
	if u, ok := r.(Undefined); ok {
		return nil, undefinedError(u)
	}
	switch op {
	case "+":
		switch x := l.(type) {
		case string:
			if y, ok := r.(string); ok {
				return x + y, nil
			}
			return nil, typeErrorf("can only concatenate str (not \"%s\") to str", typeName(r))
		case []any:
			if y, ok := r.([]any); ok {
				out := make([]any, 0, len(x)+len(y))
				return append(append(out, x...), y...), nil
			}
			return nil, typeErrorf("can only concatenate list (not \"%s\") to list", typeName(r))
		case Tuple:
			if y, ok := r.(Tuple); ok {
				out := make(Tuple, 0, len(x)+len(y))
				return append(append(out, x...), y...), nil
			}
			return nil, typeErrorf("can only concatenate tuple (not \"%s\") to tuple", typeName(r))
		}
	case "*":
		if s, ok := l.(string); ok {
			if n, ok := r.(int64); ok {
				return repeatString(s, n)
			}
		}
		if s, ok := r.(string); ok {
			if n, ok := l.(int64); ok {
				return repeatString(s, n)
			}
		}
	case "%":
		if _, ok := l.(string); ok {
			return nil, typeErrorf("printf-style string formatting is not supported by this chat-template engine")
		}
	}
	return arith(op, l, r)
}

func repeatString(s string, n int64) (any, error) {
	if n <= 0 {
		return "", nil
	}
	if int64(len(s))*n > 16<<20 {
		return nil, limitError("string repetition too large")
	}
	return strings.Repeat(s, int(n)), nil
}

func arith(op string, l, r any) (any, error) {
	li, lInt := asInt(l)
	ri, rInt := asInt(r)
	lf, lok := number(l)
	rf, rok := number(r)
	if !lok || !rok {
		return nil, typeErrorf("unsupported operand type(s) for %s: '%s' and '%s'", op, typeName(l), typeName(r))
	}
	if lInt && rInt {
		switch op {
		case "+":
			return li + ri, nil
		case "-":
			return li - ri, nil
		case "*":
			return li * ri, nil
		case "//":
			if ri == 0 {
				return nil, &RenderError{Kind: "ZeroDivisionError", Msg: "integer division or modulo by zero"}
			}
			q := li / ri
			if (li%ri != 0) && ((li < 0) != (ri < 0)) {
				q--
			}
			return q, nil
		case "%":
			if ri == 0 {
				return nil, &RenderError{Kind: "ZeroDivisionError", Msg: "integer division or modulo by zero"}
			}
			m := li % ri
			if m != 0 && ((m < 0) != (ri < 0)) {
				m += ri
			}
			return m, nil
		case "**":
			if ri > 64 {
				return nil, limitError("integer power too large")
			}
			if ri >= 0 {
				res := int64(1)
				for range ri {
					res *= li
				}
				return res, nil
			}
			return math.Pow(float64(li), float64(ri)), nil
		}
	}
	switch op {
	case "+":
		return lf + rf, nil
	case "-":
		return lf - rf, nil
	case "*":
		return lf * rf, nil
	case "/":
		if rf == 0 {
			return nil, &RenderError{Kind: "ZeroDivisionError", Msg: "division by zero"}
		}
		return lf / rf, nil
	case "//":
		if rf == 0 {
			return nil, &RenderError{Kind: "ZeroDivisionError", Msg: "float floor division by zero"}
		}
		return math.Floor(lf / rf), nil
	case "%":
		if rf == 0 {
			return nil, &RenderError{Kind: "ZeroDivisionError", Msg: "float modulo"}
		}
		m := math.Mod(lf, rf)
		if m != 0 && ((m < 0) != (rf < 0)) {
			m += rf
		}
		return m, nil
	case "**":
		return math.Pow(lf, rf), nil
	}
	return nil, typeErrorf("unsupported operator %s", op)
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func compareOp(op string, l, r any) (bool, error) {
	switch op {
	case "==":
		return equal(l, r), nil
	case "!=":
		return !equal(l, r), nil
	case "in", "notin":
		in, err := contains(r, l)
		if err != nil {
			return false, err
		}
		return in == (op == "in"), nil
	}
	if u, ok := l.(Undefined); ok {
		return false, undefinedError(u)
	}
	if u, ok := r.(Undefined); ok {
		return false, undefinedError(u)
	}
	c, ok := compare(l, r)
	if !ok {
		return false, typeErrorf("'%s' not supported between instances of '%s' and '%s'", op, typeName(l), typeName(r))
	}
	switch op {
	case "<":
		return c < 0, nil
	case ">":
		return c > 0, nil
	case "<=":
		return c <= 0, nil
	}
	return c >= 0, nil
}

// contains is Python's "needle in hay".
func contains(hay, needle any) (bool, error) {
	switch h := hay.(type) {
	case string:
		s, ok := needle.(string)
		if !ok {
			return false, typeErrorf("'in <string>' requires string as left operand, not %s", typeName(needle))
		}
		return strings.Contains(h, s), nil
	case []any:
		for _, x := range h {
			if equal(x, needle) {
				return true, nil
			}
		}
		return false, nil
	case Tuple:
		for _, x := range h {
			if equal(x, needle) {
				return true, nil
			}
		}
		return false, nil
	case *Dict:
		k, ok := needle.(string)
		if !ok {
			return false, nil
		}
		_, in := h.m[k]
		return in, nil
	case Undefined:
		if h.unsafe != "" {
			return false, securityError(h.unsafe)
		}
		return false, nil // jinja2's Undefined iterates as empty
	}
	return false, typeErrorf("argument of type '%s' is not iterable", typeName(hay))
}

// getAttr is jinja2's environment getattr in the immutable sandbox: Python
// attributes (methods) first, then items.
func getAttr(obj any, name string) (any, error) {
	switch x := obj.(type) {
	case Undefined:
		return nil, undefinedError(x)
	case *Namespace:
		if v, ok := x.attrs.Get(name); ok {
			return v, nil
		}
		return undef(name), nil
	case *Dict:
		if m, ok := lookupMethod(obj, name); ok {
			return m, nil
		}
		if v, ok := x.m[name]; ok {
			return v, nil
		}
		return undef(name), nil
	case *loopInfo:
		return x.attr(name), nil
	}
	if m, ok := lookupMethod(obj, name); ok {
		return m, nil
	}
	return undef(name), nil
}

// getItem is jinja2's getitem: obj[key], falling back to the attribute.
func getItem(obj, key any) (any, error) {
	switch x := obj.(type) {
	case Undefined:
		return nil, undefinedError(x)
	case *Dict:
		if k, ok := key.(string); ok {
			if v, ok := x.m[k]; ok {
				return v, nil
			}
			return undef(k), nil
		}
		return undef(""), nil
	case []any, Tuple, string:
		i, ok := asInt(key)
		if !ok {
			if k, ok := key.(string); ok {
				return getAttr(obj, k)
			}
			return undef(""), nil
		}
		var n int
		switch s := x.(type) {
		case []any:
			n = len(s)
		case Tuple:
			n = len(s)
		case string:
			n = utf8.RuneCountInString(s)
		}
		if i < 0 {
			i += int64(n)
		}
		if i < 0 || i >= int64(n) {
			return undef(""), nil
		}
		switch s := x.(type) {
		case []any:
			return s[i], nil
		case Tuple:
			return s[i], nil
		case string:
			return string([]rune(s)[i]), nil
		}
	case *Namespace, *loopInfo:
		if k, ok := key.(string); ok {
			return getAttr(obj, k)
		}
	}
	return undef(""), nil
}

func (li *loopInfo) attr(name string) any {
	n := len(li.items)
	switch name {
	case "index":
		return int64(li.index + 1)
	case "index0":
		return int64(li.index)
	case "revindex":
		return int64(n - li.index)
	case "revindex0":
		return int64(n - li.index - 1)
	case "first":
		return li.index == 0
	case "last":
		return li.index == n-1
	case "length":
		return int64(n)
	case "depth":
		return int64(1)
	case "depth0":
		return int64(0)
	case "previtem":
		if li.index == 0 {
			return undef("previtem")
		}
		return li.items[li.index-1]
	case "nextitem":
		if li.index == n-1 {
			return undef("nextitem")
		}
		return li.items[li.index+1]
	case "cycle":
		return &builtin{name: "loop.cycle", fn: func(_ *renderer, args []any, _ *Dict) (any, error) {
			if len(args) == 0 {
				return nil, typeErrorf("no items for cycling given")
			}
			return args[li.index%len(args)], nil
		}}
	}
	return undef(name)
}

// ---- calls ------------------------------------------------------------------

type macro struct {
	node    *macroNode
	closure *frame
	name    string
}

type builtin struct {
	name string
	fn   func(r *renderer, args []any, kw *Dict) (any, error)
}

func (r *renderer) call(fn any, args []any, kw *Dict) (any, error) {
	switch c := fn.(type) {
	case *macro:
		return r.callMacro(c, args, kw)
	case *builtin:
		return c.fn(r, args, kw)
	case *boundMethod:
		return callMethod(c, args, kw)
	case Undefined:
		return nil, undefinedError(c)
	}
	return nil, typeErrorf("'%s' object is not callable", typeName(fn))
}

func (r *renderer) callMacro(m *macro, args []any, kw *Dict) (any, error) {
	n := m.node
	if len(args) > len(n.params) {
		return nil, typeErrorf("macro '%s' takes not more than %d argument(s)", n.name, len(n.params))
	}
	r.depth++
	defer func() { r.depth-- }()
	if r.depth > r.lim.MaxDepth {
		return nil, limitError(fmt.Sprintf("macro calls nested deeper than %d", r.lim.MaxDepth))
	}
	mf := &frame{vars: map[string]any{}, parent: m.closure}
	for i, a := range args {
		mf.vars[n.params[i]] = a
	}
	if kw != nil {
		for _, k := range kw.keys {
			found := false
			for i, p := range n.params {
				if p == k {
					if i < len(args) {
						return nil, typeErrorf("macro '%s' got multiple values for argument '%s'", n.name, k)
					}
					found = true
				}
			}
			if !found {
				return nil, typeErrorf("macro '%s' takes no keyword argument '%s'", n.name, k)
			}
			mf.vars[k] = kw.m[k]
		}
	}
	firstDefault := len(n.params) - len(n.defaults)
	for i := len(args); i < len(n.params); i++ {
		p := n.params[i]
		if _, ok := mf.vars[p]; ok {
			continue
		}
		if i >= firstDefault {
			v, err := r.eval(n.defaults[i-firstDefault], mf)
			if err != nil {
				return nil, err
			}
			mf.vars[p] = v
		} else {
			mf.vars[p] = undef(p)
		}
	}
	s, err := r.capture(n.body, mf)
	if err != nil {
		return nil, withLine(err, n.line)
	}
	return s, nil
}
