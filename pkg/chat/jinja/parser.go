package jinja

import (
	"fmt"
	"strings"
)

// ---- AST --------------------------------------------------------------------

type expr interface{ exprLine() int }

type (
	constExpr struct {
		v    any
		line int
	}
	nameExpr struct {
		name string
		line int
	}
	listExpr struct {
		items []expr
		tuple bool
		line  int
	}
	dictExpr struct {
		keys, vals []expr
		line       int
	}
	attrExpr struct {
		obj  expr
		name string
		line int
	}
	itemExpr struct {
		obj, key expr
		line     int
	}
	sliceExpr struct {
		obj, lo, hi, step expr // nil when omitted
		line              int
	}
	callExpr struct {
		fn     expr
		args   []expr
		kwKeys []string
		kwVals []expr
		line   int
	}
	filterExpr struct {
		val    expr // nil inside {% filter %} blocks
		name   string
		args   []expr
		kwKeys []string
		kwVals []expr
		line   int
	}
	testExpr struct {
		val    expr
		name   string
		args   []expr
		negate bool
		line   int
	}
	binExpr struct {
		op   string
		l, r expr
		line int
	}
	compareExpr struct {
		first expr
		ops   []string
		rest  []expr
		line  int
	}
	unaryExpr struct {
		op   string
		x    expr
		line int
	}
	condExpr struct {
		test, a, b expr // b may be nil
		line       int
	}
)

func (e *constExpr) exprLine() int   { return e.line }
func (e *nameExpr) exprLine() int    { return e.line }
func (e *listExpr) exprLine() int    { return e.line }
func (e *dictExpr) exprLine() int    { return e.line }
func (e *attrExpr) exprLine() int    { return e.line }
func (e *itemExpr) exprLine() int    { return e.line }
func (e *sliceExpr) exprLine() int   { return e.line }
func (e *callExpr) exprLine() int    { return e.line }
func (e *filterExpr) exprLine() int  { return e.line }
func (e *testExpr) exprLine() int    { return e.line }
func (e *binExpr) exprLine() int     { return e.line }
func (e *compareExpr) exprLine() int { return e.line }
func (e *unaryExpr) exprLine() int   { return e.line }
func (e *condExpr) exprLine() int    { return e.line }

type node interface{}

type (
	textNode   struct{ s string }
	outputNode struct{ e expr }
	ifNode     struct {
		conds  []expr
		bodies [][]node
		els    []node
	}
	forNode struct {
		targets []string
		iter    expr
		cond    expr
		body    []node
		els     []node
		line    int
	}
	setNode struct {
		names []string // one name, or several for tuple unpacking
		ns    string   // set ns.attr = …: ns is the namespace variable
		attr  string
		e     expr
		body  []node // {% set x %}…{% endset %}
		fl    []*filterExpr
		line  int
	}
	macroNode struct {
		name     string
		params   []string
		defaults []expr // aligned with the last len(defaults) params
		body     []node
		line     int
	}
	loopCtlNode struct {
		brk  bool
		line int
	}
	filterBlockNode struct {
		fl   []*filterExpr
		body []node
	}
)

// ---- parser -----------------------------------------------------------------

type parser struct {
	segs []segment
	i    int
	// names the template defines itself (macros, set targets, loop
	// variables, macro parameters): calls to other bare names are errors.
	defined map[string]bool
	calls   []*nameExpr
	methods []*attrExpr
	filters []*filterExpr
	tests   []*testExpr
}

func parse(src string) ([]node, error) {
	segs, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{segs: segs, defined: map[string]bool{}}
	body, stop, err := p.parseBody(nil)
	if err != nil {
		return nil, err
	}
	if stop != nil {
		return nil, &SyntaxError{Line: stop.line, Msg: fmt.Sprintf("unexpected '%s'", stop.toks[0].s)}
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return body, nil
}

// parseBody parses nodes until a block tag whose keyword is in stops, which
// it returns (unconsumed tokens included) for the caller.
func (p *parser) parseBody(stops []string) ([]node, *segment, error) {
	var out []node
	for p.i < len(p.segs) {
		seg := &p.segs[p.i]
		p.i++
		switch seg.kind {
		case segText:
			out = append(out, &textNode{s: seg.text})
		case segVar:
			ts := &tokStream{toks: seg.toks, line: seg.line}
			e, err := p.parseExpr(ts, true)
			if err != nil {
				return nil, nil, err
			}
			if err := ts.expectEnd(); err != nil {
				return nil, nil, err
			}
			out = append(out, &outputNode{e: e})
		case segBlock:
			if len(seg.toks) == 0 || seg.toks[0].kind != tkName {
				return nil, nil, &SyntaxError{Line: seg.line, Msg: "block tag without a statement name"}
			}
			kw := seg.toks[0].s
			for _, s := range stops {
				if kw == s {
					return out, seg, nil
				}
			}
			n, err := p.parseStatement(seg)
			if err != nil {
				return nil, nil, err
			}
			if n != nil {
				out = append(out, n)
			}
		}
	}
	if len(stops) > 0 {
		line := 0
		if len(p.segs) > 0 {
			line = p.segs[len(p.segs)-1].line
		}
		return nil, nil, &SyntaxError{Line: line, Msg: fmt.Sprintf("unexpected end of template, expected '%s'", strings.Join(stops, "' or '"))}
	}
	return out, nil, nil
}

func (p *parser) parseStatement(seg *segment) (node, error) {
	ts := &tokStream{toks: seg.toks[1:], line: seg.line}
	kw := seg.toks[0].s
	switch kw {
	case "if":
		return p.parseIf(ts)
	case "for":
		return p.parseFor(ts, seg.line)
	case "set":
		return p.parseSet(ts, seg.line)
	case "macro":
		return p.parseMacro(ts, seg.line)
	case "break", "continue":
		if err := ts.expectEnd(); err != nil {
			return nil, err
		}
		return &loopCtlNode{brk: kw == "break", line: seg.line}, nil
	case "filter":
		fl, err := p.parseFilterChain(ts, nil)
		if err != nil {
			return nil, err
		}
		if err := ts.expectEnd(); err != nil {
			return nil, err
		}
		body, err := p.parseBlock("endfilter")
		if err != nil {
			return nil, err
		}
		return &filterBlockNode{fl: fl, body: body}, nil
	case "generation":
		// transformers' AssistantTracker extension: marks assistant text for
		// return_assistant_tokens_mask; it renders its body unchanged.
		if err := ts.expectEnd(); err != nil {
			return nil, err
		}
		body, err := p.parseBlock("endgeneration")
		if err != nil {
			return nil, err
		}
		return &filterBlockNode{body: body}, nil
	case "raw":
		// The lexer copied the raw text; it emitted an endraw marker.
		if p.i < len(p.segs) && p.segs[p.i].kind == segText {
			t := &textNode{s: p.segs[p.i].text}
			p.i++
			if p.i < len(p.segs) && p.segs[p.i].kind == segBlock && p.segs[p.i].toks[0].s == "endraw" {
				p.i++
			}
			return t, nil
		}
		if p.i < len(p.segs) && p.segs[p.i].kind == segBlock && p.segs[p.i].toks[0].s == "endraw" {
			p.i++
		}
		return nil, nil
	case "do":
		return nil, &SyntaxError{Line: seg.line, Msg: "the 'do' statement (jinja2.ext.do) is not enabled in transformers' environment"}
	case "include", "import", "from", "extends", "block", "call", "with", "autoescape", "trans":
		return nil, &SyntaxError{Line: seg.line, Msg: fmt.Sprintf("'%s' statements are not supported by this chat-template engine", kw)}
	}
	if strings.HasPrefix(kw, "end") || kw == "else" || kw == "elif" {
		return nil, &SyntaxError{Line: seg.line, Msg: fmt.Sprintf("unexpected '%s': no open block to close", kw)}
	}
	return nil, &SyntaxError{Line: seg.line, Msg: fmt.Sprintf("unknown statement '%s'", kw)}
}

// parseBlock parses a body up to its end tag end, which must stand alone.
func (p *parser) parseBlock(end string) ([]node, error) {
	body, stop, err := p.parseBody([]string{end})
	if err != nil {
		return nil, err
	}
	if err := endTag(stop); err != nil {
		return nil, err
	}
	return body, nil
}

func endTag(stop *segment) error {
	if len(stop.toks) != 1 {
		return &SyntaxError{Line: stop.line, Msg: fmt.Sprintf("unexpected tokens after '%s'", stop.toks[0].s)}
	}
	return nil
}

func (p *parser) parseIf(ts *tokStream) (node, error) {
	n := &ifNode{}
	for {
		cond, err := p.parseExpr(ts, true)
		if err != nil {
			return nil, err
		}
		if err := ts.expectEnd(); err != nil {
			return nil, err
		}
		body, stop, err := p.parseBody([]string{"elif", "else", "endif"})
		if err != nil {
			return nil, err
		}
		n.conds = append(n.conds, cond)
		n.bodies = append(n.bodies, body)
		switch stop.toks[0].s {
		case "elif":
			ts = &tokStream{toks: stop.toks[1:], line: stop.line}
			continue
		case "else":
			if err := endTag(stop); err != nil {
				return nil, err
			}
			els, err := p.parseBlock("endif")
			if err != nil {
				return nil, err
			}
			n.els = els
		default:
			if err := endTag(stop); err != nil {
				return nil, err
			}
		}
		return n, nil
	}
}

func (p *parser) parseFor(ts *tokStream, line int) (node, error) {
	n := &forNode{line: line}
	for {
		t := ts.next()
		if t.kind != tkName {
			return nil, ts.errorf("expected a loop variable name, got %s", t)
		}
		n.targets = append(n.targets, t.s)
		p.defined[t.s] = true
		if !ts.skipOp(",") {
			break
		}
	}
	if !ts.skipName("in") {
		return nil, ts.errorf("expected 'in' in for statement")
	}
	iter, err := p.parseExpr(ts, false)
	if err != nil {
		return nil, err
	}
	n.iter = iter
	if ts.skipName("if") {
		if n.cond, err = p.parseExpr(ts, true); err != nil {
			return nil, err
		}
	}
	if ts.skipName("recursive") {
		return nil, ts.errorf("recursive for loops are not supported by this chat-template engine")
	}
	if err := ts.expectEnd(); err != nil {
		return nil, err
	}
	body, stop, err := p.parseBody([]string{"else", "endfor"})
	if err != nil {
		return nil, err
	}
	n.body = body
	if err := endTag(stop); err != nil {
		return nil, err
	}
	if stop.toks[0].s == "else" {
		els, err := p.parseBlock("endfor")
		if err != nil {
			return nil, err
		}
		n.els = els
	}
	return n, nil
}

func (p *parser) parseSet(ts *tokStream, line int) (node, error) {
	n := &setNode{line: line}
	t := ts.next()
	if t.kind != tkName {
		return nil, ts.errorf("expected a name after 'set', got %s", t)
	}
	if ts.skipOp(".") {
		a := ts.next()
		if a.kind != tkName {
			return nil, ts.errorf("expected an attribute name after '%s.'", t.s)
		}
		n.ns, n.attr = t.s, a.s
	} else {
		n.names = []string{t.s}
		for ts.skipOp(",") {
			t := ts.next()
			if t.kind != tkName {
				return nil, ts.errorf("expected a name in set targets, got %s", t)
			}
			n.names = append(n.names, t.s)
		}
		for _, name := range n.names {
			p.defined[name] = true
		}
	}
	if ts.skipOp("=") {
		e, err := p.parseExpr(ts, true)
		if err != nil {
			return nil, err
		}
		// "set a, b = 1, 2": a bare tuple on the right.
		if ts.peekOp(",") {
			items := []expr{e}
			for ts.skipOp(",") {
				if ts.peek().kind == tkEOF {
					break
				}
				x, err := p.parseExpr(ts, true)
				if err != nil {
					return nil, err
				}
				items = append(items, x)
			}
			e = &listExpr{items: items, tuple: true, line: e.exprLine()}
		}
		n.e = e
		return n, ts.expectEnd()
	}
	if n.ns != "" || len(n.names) != 1 {
		return nil, ts.errorf("expected '=' in set statement")
	}
	// Block set: {% set x | filter %}…{% endset %}
	if ts.peekOp("|") {
		fl, err := p.parseFilterChain(ts, nil)
		if err != nil {
			return nil, err
		}
		n.fl = fl
	}
	if err := ts.expectEnd(); err != nil {
		return nil, err
	}
	body, err := p.parseBlock("endset")
	if err != nil {
		return nil, err
	}
	n.body = body
	return n, nil
}

func (p *parser) parseMacro(ts *tokStream, line int) (node, error) {
	name := ts.next()
	if name.kind != tkName {
		return nil, ts.errorf("expected a macro name")
	}
	n := &macroNode{name: name.s, line: line}
	p.defined[name.s] = true
	if !ts.skipOp("(") {
		return nil, ts.errorf("expected '(' after macro name")
	}
	for !ts.skipOp(")") {
		if len(n.params) > 0 && !ts.skipOp(",") {
			return nil, ts.errorf("expected ',' or ')' in macro parameters")
		}
		if ts.skipOp(")") {
			break
		}
		pn := ts.next()
		if pn.kind != tkName {
			return nil, ts.errorf("expected a parameter name, got %s", pn)
		}
		n.params = append(n.params, pn.s)
		p.defined[pn.s] = true
		if ts.skipOp("=") {
			d, err := p.parseExpr(ts, true)
			if err != nil {
				return nil, err
			}
			n.defaults = append(n.defaults, d)
		} else if len(n.defaults) > 0 {
			return nil, ts.errorf("non-default parameter '%s' follows a default one", pn.s)
		}
	}
	if err := ts.expectEnd(); err != nil {
		return nil, err
	}
	body, stop, err := p.parseBody([]string{"endmacro"})
	if err != nil {
		return nil, err
	}
	if len(stop.toks) > 2 || len(stop.toks) == 2 && stop.toks[1].s != n.name {
		return nil, &SyntaxError{Line: stop.line, Msg: "unexpected tokens after 'endmacro'"}
	}
	n.body = body
	return n, nil
}

// ---- expressions -------------------------------------------------------------

type tokStream struct {
	toks []token
	pos  int
	line int
}

func (ts *tokStream) peek() token {
	if ts.pos < len(ts.toks) {
		return ts.toks[ts.pos]
	}
	return token{kind: tkEOF, line: ts.line}
}

func (ts *tokStream) next() token {
	t := ts.peek()
	if ts.pos < len(ts.toks) {
		ts.pos++
	}
	return t
}

func (ts *tokStream) peekOp(op string) bool {
	t := ts.peek()
	return t.kind == tkOp && t.s == op
}

func (ts *tokStream) peekName(name string) bool {
	t := ts.peek()
	return t.kind == tkName && t.s == name
}

func (ts *tokStream) skipOp(op string) bool {
	if ts.peekOp(op) {
		ts.pos++
		return true
	}
	return false
}

func (ts *tokStream) skipName(name string) bool {
	if ts.peekName(name) {
		ts.pos++
		return true
	}
	return false
}

func (ts *tokStream) errorf(format string, args ...any) error {
	line := ts.peek().line
	if line == 0 {
		line = ts.line
	}
	return &SyntaxError{Line: line, Msg: fmt.Sprintf(format, args...)}
}

func (ts *tokStream) expectEnd() error {
	if t := ts.peek(); t.kind != tkEOF {
		return ts.errorf("unexpected %s", t)
	}
	return nil
}

// parseExpr parses a full expression; withCond allows "a if b else c"
// (Jinja allows it everywhere except for-loop iterables, where "if" starts
// the loop filter).
func (p *parser) parseExpr(ts *tokStream, withCond bool) (expr, error) {
	e, err := p.parseOr(ts)
	if err != nil {
		return nil, err
	}
	for withCond && ts.peekName("if") {
		line := ts.next().line
		test, err := p.parseOr(ts)
		if err != nil {
			return nil, err
		}
		var b expr
		if ts.skipName("else") {
			if b, err = p.parseExpr(ts, true); err != nil {
				return nil, err
			}
		}
		e = &condExpr{test: test, a: e, b: b, line: line}
	}
	return e, nil
}

func (p *parser) parseOr(ts *tokStream) (expr, error) {
	return p.parseLeft(ts, anyName("or"), p.parseAnd)
}

func (p *parser) parseAnd(ts *tokStream) (expr, error) {
	return p.parseLeft(ts, anyName("and"), p.parseNot)
}

// parseLeft parses a left-associative chain of operands (next) joined by
// the binary operators isOp accepts.
func (p *parser) parseLeft(ts *tokStream, isOp func(*tokStream) bool, next func(*tokStream) (expr, error)) (expr, error) {
	l, err := next(ts)
	if err != nil {
		return nil, err
	}
	for isOp(ts) {
		t := ts.next()
		r, err := next(ts)
		if err != nil {
			return nil, err
		}
		l = &binExpr{op: t.s, l: l, r: r, line: t.line}
	}
	return l, nil
}

// anyName and anyOp report whether the next token is one of the keyword
// or symbol operators given.
func anyName(names ...string) func(*tokStream) bool {
	return func(ts *tokStream) bool {
		for _, n := range names {
			if ts.peekName(n) {
				return true
			}
		}
		return false
	}
}

func anyOp(ops ...string) func(*tokStream) bool {
	return func(ts *tokStream) bool {
		for _, o := range ops {
			if ts.peekOp(o) {
				return true
			}
		}
		return false
	}
}

func (p *parser) parseNot(ts *tokStream) (expr, error) {
	if ts.peekName("not") {
		line := ts.next().line
		x, err := p.parseNot(ts)
		if err != nil {
			return nil, err
		}
		return &unaryExpr{op: "not", x: x, line: line}, nil
	}
	return p.parseCompare(ts)
}

func (p *parser) parseCompare(ts *tokStream) (expr, error) {
	first, err := p.parseMath1(ts)
	if err != nil {
		return nil, err
	}
	c := &compareExpr{first: first, line: first.exprLine()}
	for {
		t := ts.peek()
		var op string
		switch {
		case t.kind == tkOp && (t.s == "==" || t.s == "!=" || t.s == "<" || t.s == ">" || t.s == "<=" || t.s == ">="):
			op = t.s
			ts.next()
		case t.kind == tkName && t.s == "in":
			op = "in"
			ts.next()
		case t.kind == tkName && t.s == "not" && ts.pos+1 < len(ts.toks) && ts.toks[ts.pos+1].kind == tkName && ts.toks[ts.pos+1].s == "in":
			op = "notin"
			ts.next()
			ts.next()
		}
		if op == "" {
			break
		}
		r, err := p.parseMath1(ts)
		if err != nil {
			return nil, err
		}
		c.ops = append(c.ops, op)
		c.rest = append(c.rest, r)
	}
	if len(c.ops) == 0 {
		return first, nil
	}
	return c, nil
}

func (p *parser) parseMath1(ts *tokStream) (expr, error) {
	return p.parseLeft(ts, anyOp("+", "-"), p.parseConcat)
}

func (p *parser) parseConcat(ts *tokStream) (expr, error) {
	return p.parseLeft(ts, anyOp("~"), p.parseMath2)
}

func (p *parser) parseMath2(ts *tokStream) (expr, error) {
	return p.parseLeft(ts, anyOp("*", "/", "//", "%"), p.parsePow)
}

func (p *parser) parsePow(ts *tokStream) (expr, error) {
	return p.parseLeft(ts, anyOp("**"), func(ts *tokStream) (expr, error) { return p.parseUnary(ts, true) })
}

func (p *parser) parseUnary(ts *tokStream, withFilter bool) (expr, error) {
	var e expr
	if ts.peekOp("-") || ts.peekOp("+") {
		t := ts.next()
		x, err := p.parseUnary(ts, false)
		if err != nil {
			return nil, err
		}
		e = &unaryExpr{op: t.s, x: x, line: t.line}
	} else {
		x, err := p.parsePrimary(ts)
		if err != nil {
			return nil, err
		}
		e = x
	}
	e, err := p.parsePostfix(ts, e)
	if err != nil {
		return nil, err
	}
	if withFilter {
		return p.parseFilterTests(ts, e)
	}
	return e, nil
}

func (p *parser) parsePrimary(ts *tokStream) (expr, error) {
	t := ts.next()
	switch t.kind {
	case tkName:
		switch t.s {
		case "true", "True":
			return &constExpr{v: true, line: t.line}, nil
		case "false", "False":
			return &constExpr{v: false, line: t.line}, nil
		case "none", "None":
			return &constExpr{v: nil, line: t.line}, nil
		}
		return &nameExpr{name: t.s, line: t.line}, nil
	case tkString:
		s := t.s
		// Adjacent string literals concatenate, as in Python.
		for ts.peek().kind == tkString {
			s += ts.next().s
		}
		return &constExpr{v: s, line: t.line}, nil
	case tkInt:
		return &constExpr{v: t.i, line: t.line}, nil
	case tkFloat:
		return &constExpr{v: t.f, line: t.line}, nil
	case tkOp:
		switch t.s {
		case "(":
			if ts.skipOp(")") {
				return &listExpr{tuple: true, line: t.line}, nil
			}
			e, err := p.parseExpr(ts, true)
			if err != nil {
				return nil, err
			}
			if ts.peekOp(",") {
				items := []expr{e}
				for ts.skipOp(",") {
					if ts.peekOp(")") {
						break
					}
					x, err := p.parseExpr(ts, true)
					if err != nil {
						return nil, err
					}
					items = append(items, x)
				}
				e = &listExpr{items: items, tuple: true, line: t.line}
			}
			if !ts.skipOp(")") {
				return nil, ts.errorf("expected ')'")
			}
			return e, nil
		case "[":
			l := &listExpr{line: t.line}
			for !ts.skipOp("]") {
				if len(l.items) > 0 && !ts.skipOp(",") {
					return nil, ts.errorf("expected ',' or ']' in list")
				}
				if ts.skipOp("]") {
					break
				}
				x, err := p.parseExpr(ts, true)
				if err != nil {
					return nil, err
				}
				l.items = append(l.items, x)
			}
			return l, nil
		case "{":
			d := &dictExpr{line: t.line}
			for !ts.skipOp("}") {
				if len(d.keys) > 0 && !ts.skipOp(",") {
					return nil, ts.errorf("expected ',' or '}' in dict")
				}
				if ts.skipOp("}") {
					break
				}
				k, err := p.parseExpr(ts, true)
				if err != nil {
					return nil, err
				}
				if !ts.skipOp(":") {
					return nil, ts.errorf("expected ':' in dict")
				}
				v, err := p.parseExpr(ts, true)
				if err != nil {
					return nil, err
				}
				d.keys = append(d.keys, k)
				d.vals = append(d.vals, v)
			}
			return d, nil
		}
	}
	return nil, &SyntaxError{Line: t.line, Msg: fmt.Sprintf("unexpected %s", t)}
}

func (p *parser) parsePostfix(ts *tokStream, e expr) (expr, error) {
	for {
		switch {
		case ts.peekOp("."):
			ts.next()
			t := ts.next()
			switch t.kind {
			case tkName:
				a := &attrExpr{obj: e, name: t.s, line: t.line}
				e = a
			case tkInt:
				e = &itemExpr{obj: e, key: &constExpr{v: t.i, line: t.line}, line: t.line}
			default:
				return nil, ts.errorf("expected an attribute name after '.'")
			}
		case ts.peekOp("["):
			line := ts.next().line
			var parts [3]expr
			colons := 0
			for {
				if ts.peekOp(":") {
					ts.next()
					colons++
					if colons > 2 {
						return nil, ts.errorf("too many ':' in subscript")
					}
					continue
				}
				if ts.peekOp("]") {
					ts.next()
					break
				}
				if parts[colons] != nil {
					return nil, ts.errorf("expected ':' or ']' in subscript")
				}
				x, err := p.parseExpr(ts, true)
				if err != nil {
					return nil, err
				}
				parts[colons] = x
			}
			if colons == 0 {
				if parts[0] == nil {
					return nil, ts.errorf("empty subscript")
				}
				e = &itemExpr{obj: e, key: parts[0], line: line}
			} else {
				e = &sliceExpr{obj: e, lo: parts[0], hi: parts[1], step: parts[2], line: line}
			}
		case ts.peekOp("("):
			line := ts.next().line
			c := &callExpr{fn: e, line: line}
			if err := p.parseArgs(ts, &c.args, &c.kwKeys, &c.kwVals); err != nil {
				return nil, err
			}
			if n, ok := e.(*nameExpr); ok {
				p.calls = append(p.calls, n)
			}
			if a, ok := e.(*attrExpr); ok {
				p.methods = append(p.methods, a)
			}
			e = c
		default:
			return e, nil
		}
	}
}

// parseArgs parses call arguments after "(" up to and including ")".
func (p *parser) parseArgs(ts *tokStream, args *[]expr, kwKeys *[]string, kwVals *[]expr) error {
	first := true
	for !ts.skipOp(")") {
		if !first && !ts.skipOp(",") {
			return ts.errorf("expected ',' or ')' in arguments")
		}
		first = false
		if ts.skipOp(")") {
			return nil
		}
		if ts.peekOp("*") || ts.peekOp("**") {
			return ts.errorf("*args and **kwargs in calls are not supported by this chat-template engine")
		}
		if t := ts.peek(); t.kind == tkName && ts.pos+1 < len(ts.toks) && ts.toks[ts.pos+1].kind == tkOp && ts.toks[ts.pos+1].s == "=" {
			ts.next()
			ts.next()
			v, err := p.parseExpr(ts, true)
			if err != nil {
				return err
			}
			*kwKeys = append(*kwKeys, t.s)
			*kwVals = append(*kwVals, v)
			continue
		}
		if len(*kwKeys) > 0 {
			return ts.errorf("positional argument follows keyword argument")
		}
		v, err := p.parseExpr(ts, true)
		if err != nil {
			return err
		}
		*args = append(*args, v)
	}
	return nil
}

func (p *parser) parseFilterTests(ts *tokStream, e expr) (expr, error) {
	for {
		switch {
		case ts.peekOp("|"):
			fl, err := p.parseFilterChain(ts, e)
			if err != nil {
				return nil, err
			}
			e = fl[len(fl)-1]
		case ts.peekName("is"):
			ts.next()
			t := &testExpr{val: e, line: ts.peek().line}
			if ts.skipName("not") {
				t.negate = true
			}
			name := ts.next()
			if name.kind != tkName && !(name.kind == tkOp && (name.s == "==" || name.s == "!=" || name.s == "<" || name.s == ">" || name.s == "<=" || name.s == ">=")) {
				return nil, ts.errorf("expected a test name after 'is'")
			}
			t.name = name.s
			switch {
			case ts.peekOp("("):
				ts.next()
				var kk []string
				var kv []expr
				if err := p.parseArgs(ts, &t.args, &kk, &kv); err != nil {
					return nil, err
				}
				if len(kk) > 0 {
					return nil, ts.errorf("keyword arguments to tests are not supported")
				}
			default:
				// One bare argument: "is divisibleby 3", "is sameas none".
				nt := ts.peek()
				if nt.kind == tkString || nt.kind == tkInt || nt.kind == tkFloat ||
					nt.kind == tkName && !isKeyword(nt.s) || nt.kind == tkOp && (nt.s == "[" || nt.s == "{") {
					arg, err := p.parsePrimary(ts)
					if err != nil {
						return nil, err
					}
					if arg, err = p.parsePostfix(ts, arg); err != nil {
						return nil, err
					}
					t.args = []expr{arg}
				}
			}
			p.tests = append(p.tests, t)
			e = t
		default:
			return e, nil
		}
	}
}

func isKeyword(s string) bool {
	switch s {
	case "else", "or", "and", "if", "not", "in", "is":
		return true
	}
	return false
}

// parseFilterChain parses one or more "| name(args)" applied to val.
func (p *parser) parseFilterChain(ts *tokStream, val expr) ([]*filterExpr, error) {
	var out []*filterExpr
	first := val == nil // {% filter name %} starts without a pipe
	for first || ts.peekOp("|") {
		if !first {
			ts.next()
		}
		first = false
		name := ts.next()
		if name.kind != tkName {
			return nil, ts.errorf("expected a filter name")
		}
		f := &filterExpr{val: val, name: name.s, line: name.line}
		for ts.peekOp(".") { // dotted filter names are never built in
			ts.next()
			n := ts.next()
			f.name += "." + n.s
		}
		if ts.skipOp("(") {
			if err := p.parseArgs(ts, &f.args, &f.kwKeys, &f.kwVals); err != nil {
				return nil, err
			}
		}
		p.filters = append(p.filters, f)
		out = append(out, f)
		val = f
	}
	return out, nil
}

// check rejects, at parse time, filters, tests, functions and methods this
// engine does not implement, so an unsupported template fails at Load
// rather than rendering wrong text.
func (p *parser) check() error {
	for _, f := range p.filters {
		if _, ok := filters[f.name]; !ok {
			return &SyntaxError{Line: f.line, Msg: fmt.Sprintf("filter '%s' is not supported by this chat-template engine", f.name)}
		}
	}
	for _, t := range p.tests {
		if _, ok := tests[t.name]; !ok {
			return &SyntaxError{Line: t.line, Msg: fmt.Sprintf("test '%s' is not supported by this chat-template engine", t.name)}
		}
	}
	for _, c := range p.calls {
		if _, ok := globals[c.name]; !ok && !p.defined[c.name] {
			return &SyntaxError{Line: c.line, Msg: fmt.Sprintf("function '%s' is not defined (this engine provides %s)", c.name, strings.Join(globalNames(), ", "))}
		}
	}
	for _, m := range p.methods {
		if unsupportedMethods[m.name] {
			return &SyntaxError{Line: m.line, Msg: fmt.Sprintf("method '%s' is not supported by this chat-template engine", m.name)}
		}
	}
	return nil
}
