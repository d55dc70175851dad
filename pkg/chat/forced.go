package chat

import (
	"errors"
	"fmt"
	"strings"
)

// Forced tool calls (tool_choice "required" or a named function): the
// server constrains decoding so that the output is exactly one tool call
// in the model family's own syntax, which the family's Parser turns into
// an OpenAI tool call. ForceToolCall returns that syntax as a small
// grammar over the decoded text; a CallMatcher walks it byte by byte.
//
// What each format's grammar guarantees (the output is the whole
// response: nothing before the call except, when the prompt opened the
// reasoning block, reasoning up to its close marker and at most two
// newlines; nothing after the closing literal but end-of-sequence):
//
//   - qwen3: `<tool_call>\n{"name": "NAME", "arguments": OBJECT}\n</tool_call>`
//     with NAME one of the names (JSON-escaped) and OBJECT any JSON object
//     that does not contain Qwen's end-of-turn texts (<|im_end|>,
//     <|endoftext|>, which the parser would strip). Parses to a call of
//     NAME whose arguments are OBJECT, compacted.
//   - qwen3_coder: `<tool_call>\n<function=NAME>\n`, then any number of
//     `<parameter=P>\nVALUE</parameter>\n`, then `</function>\n</tool_call>`.
//     P is any non-empty text without '<', '>' or whitespace; VALUE any
//     text without `<parameter=`, `</function>` or the end-of-turn texts,
//     ended by the first `</parameter>` (the model writes the newline
//     before it). Parses to a call of NAME whose arguments are a JSON
//     object of those parameters, each value typed by the tool's
//     parameter schema as the parser does (a value that is not valid for
//     its type stays a string). Not guaranteed: that P is a parameter of
//     the tool, that required parameters are present, that values match
//     their schema types.
//   - harmony: `<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>OBJECT<|call|>`,
//     where <|call|> may also be the end-of-sequence token itself, and
//     OBJECT is a JSON object holding none of the harmony terminators
//     (<|end|>, <|call|>, <|return|>, <|start|>). Parses to a call of NAME
//     with arguments OBJECT. The analysis channel is skipped: the model
//     does not reason first.
//   - gemma4: `<|tool_call>call:NAME{…}<tool_call|>` where the braces hold
//     a Gemma object: keys bare ([A-Za-z0-9_.-]+) or <|"|>-quoted, strings
//     <|"|>…<|"|> (holding no <turn|> or <eos>), numbers, true, false,
//     null, nested objects and arrays up to 64 deep: the JSON object
//     grammar with Gemma's quoting (numbers limited to 200 integer digits
//     and a two-digit exponent, which the parser's float64 reading takes). Parses to a call of NAME whose
//     arguments are that object as JSON.
//   - deepseek_dsml: `<｜DSML｜tool_calls>\n<｜DSML｜invoke name="NAME">\n`,
//     then any number of `<｜DSML｜parameter name="P" string="true|false">VALUE</｜DSML｜parameter>\n`,
//     then `</｜DSML｜invoke>\n</｜DSML｜tool_calls>`. P is any non-empty text
//     without '"', '<', '>' or newlines; VALUE any text without
//     `<｜DSML｜invoke`, `</｜DSML｜inv` or <｜end▁of▁sentence｜>. Parses to a call
//     of NAME whose arguments are a JSON object of the parameters
//     (string="false" values that are not JSON stay strings). Not
//     guaranteed: parameter names or value types against the schema.
//
// The grammar is over decoded text, so the special tokens a literal needs
// must decode to their text (the caller builds its token texts the way
// its decoder does), and a multi-byte character of a literal (DSML's ｜)
// must come from a token holding the whole character: a token's lossy
// decoding of part of one never matches.

// ErrNoToolFormat: the format has no tool-call syntax to force.
var ErrNoToolFormat = errors.New("this model's chat template has no tool-call format")

// Segment kinds of a forced-call grammar.
const (
	segChoice uint8 = iota // one of alts (literals); the shortest complete one wins
	segUntil               // any text, ended by the first occurrence of end
	segJSON                // a JSON object whose '{' the previous segment wrote
	segGemma               // a Gemma object whose '{' the previous segment wrote
)

const acceptAll = -1 // the grammar is complete

type segment struct {
	kind     uint8
	alts     []string // segChoice
	next     []int    // segChoice: per alternative; else next[0]
	end      string   // segUntil: the literal that ends it (part of it)
	deny     string   // segUntil: bytes the text before end may not hold
	nonEmpty bool     // segUntil: text before end must not be empty
	forbid   []string // substrings the segment may not contain
}

// ForcedCall is the grammar of one forced tool call in a format.
type ForcedCall struct {
	Format  Format
	Names   []string
	segs    []segment
	maxTail int
}

// nameDeny lists, per format, what a function name may not contain to be
// written and parsed back unchanged.
var nameDeny = map[Format]string{
	FormatQwen3:        "",
	FormatQwen3Coder:   "<>\n\r",
	FormatHarmony:      "< \t\n\r",
	FormatGemma4:       "{<\n\r",
	FormatDeepSeekDSML: "\"<>\n\r",
}

// ForceToolCall returns the grammar of a call of one of names (a single
// name for a named tool_choice) in format. reasoningOpen says the prompt
// opened the reasoning block (PromptOpensReasoning): the grammar then
// starts with free reasoning up to the format's close marker. An error
// wraps ErrNoToolFormat for formats without tool calls, or names a
// function name the format cannot carry.
func ForceToolCall(format Format, names []string, reasoningOpen bool) (*ForcedCall, error) {
	deny, ok := nameDeny[format]
	if !ok {
		return nil, fmt.Errorf("%w (output format %s)", ErrNoToolFormat, format)
	}
	if len(names) == 0 {
		return nil, errors.New("no function names to choose from")
	}
	for _, n := range names {
		if n == "" || strings.TrimSpace(n) != n || strings.ContainsAny(n, deny) {
			return nil, fmt.Errorf("function name %q cannot be written in the %s tool-call format", n, format)
		}
	}
	g := &ForcedCall{Format: format, Names: append([]string(nil), names...)}
	spec := tagSpecs[format]
	// with appends name+after for each name, as one choice.
	with := func(after string) []string {
		alts := make([]string, len(names))
		for i, n := range names {
			if format == FormatQwen3 {
				n = string(jsonString(n))
				n = n[1 : len(n)-1]
			}
			alts[i] = n + after
		}
		return alts
	}
	var open string
	switch format {
	case FormatQwen3:
		open = "<tool_call>\n{\"name\": \""
	case FormatQwen3Coder:
		open = "<tool_call>\n<function="
	case FormatHarmony:
		open = "<|channel|>commentary to=functions."
	case FormatGemma4:
		open = "<|tool_call>call:"
	case FormatDeepSeekDSML:
		open = "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\""
	}
	// Index 0 opens the call, after optional reasoning.
	opens := []string{open}
	var pre []segment
	if reasoningOpen && len(spec.thinkClose) > 0 {
		pre = append(pre, segment{kind: segUntil, end: spec.thinkClose[0], next: []int{1}})
		opens = []string{open, "\n" + open, "\n\n" + open}
	}
	b := len(pre) // index of the opening choice
	choice := func(alts []string, next ...int) segment {
		if len(next) == 1 && len(alts) > 1 {
			for len(next) < len(alts) {
				next = append(next, next[0])
			}
		}
		return segment{kind: segChoice, alts: alts, next: next}
	}
	var segs []segment
	switch format {
	case FormatQwen3:
		segs = []segment{
			choice(opens, b+1),
			choice(with(`", "arguments": {`), b+2),
			{kind: segJSON, forbid: spec.ignore, next: []int{b + 3}},
			choice([]string{"}\n</tool_call>"}, acceptAll),
		}
	case FormatQwen3Coder:
		forbid := append([]string{"<parameter=", "</function>"}, spec.ignore...)
		segs = []segment{
			choice(opens, b+1),
			choice(with(">\n"), b+2),
			choice([]string{"<parameter=", "</function>\n</tool_call>"}, b+3, acceptAll), // b+2: a parameter or the end
			{kind: segUntil, end: ">", deny: "< \t\r\n", nonEmpty: true, next: []int{b + 4}},
			choice([]string{"\n"}, b+5),
			{kind: segUntil, end: "</parameter>", forbid: forbid, next: []int{b + 6}},
			choice([]string{"\n"}, b+2),
		}
	case FormatHarmony:
		segs = []segment{
			choice(opens, b+1),
			choice(with(" <|constrain|>json<|message|>{"), b+2),
			{kind: segJSON, forbid: harmonyTerminators, next: []int{b + 3}},
			choice([]string{hrCall}, acceptAll),
		}
	case FormatGemma4:
		segs = []segment{
			choice(opens, b+1),
			choice(with("{"), b+2),
			{kind: segGemma, forbid: spec.ignore, next: []int{b + 3}},
			choice([]string{"<tool_call|>"}, acceptAll),
		}
	case FormatDeepSeekDSML:
		forbid := append([]string{"<｜DSML｜invoke", "</｜DSML｜inv"}, spec.ignore...)
		segs = []segment{
			choice(opens, b+1),
			choice(with("\">\n"), b+2),
			choice([]string{"<｜DSML｜parameter name=\"", "</｜DSML｜invoke>\n</｜DSML｜tool_calls>"}, b+3, acceptAll), // b+2
			{kind: segUntil, end: "\"", deny: "<>\r\n", nonEmpty: true, next: []int{b + 4}},
			choice([]string{" string=\"true\">", " string=\"false\">"}, b+5),
			{kind: segUntil, end: "</｜DSML｜parameter>", forbid: forbid, next: []int{b + 6}},
			choice([]string{"\n"}, b+2),
		}
	}
	g.segs = append(pre, segs...)
	for _, s := range g.segs {
		g.maxTail = max(g.maxTail, len(s.end))
		for _, f := range s.forbid {
			g.maxTail = max(g.maxTail, len(f))
		}
	}
	return g, nil
}

// Start returns a matcher at the start of the grammar.
func (g *ForcedCall) Start() *CallMatcher {
	m := &CallMatcher{g: g}
	m.enter(0)
	return m
}

// CallMatcher is a position in a ForcedCall grammar.
type CallMatcher struct {
	g    *ForcedCall
	seg  int    // current segment; acceptAll when complete
	pos  int    // segChoice: bytes matched; segUntil: bytes read
	ref  int    // segChoice: an alternative holding the matched bytes
	tail []byte // recent bytes of the segment (end and forbidden checks)
	json JSONRecognizer
	// Gemma objects.
	gq   int  // bytes of <|"|> matched
	gstr bool // inside a <|"|> string
	gkey bool // inside a bare key
	gint int  // integer digits of the number being read
	gexp int  // its exponent digits

	scratch *CallMatcher
	probe   JSONRecognizer
}

// CopyFrom makes m a copy of o, reusing m's buffers.
func (m *CallMatcher) CopyFrom(o *CallMatcher) {
	m.g, m.seg, m.pos, m.ref = o.g, o.seg, o.pos, o.ref
	m.tail = append(m.tail[:0], o.tail...)
	m.json.CopyFrom(&o.json)
	m.gq, m.gstr, m.gkey, m.gint, m.gexp = o.gq, o.gstr, o.gkey, o.gint, o.gexp
}

// Done reports whether the call is complete: only end-of-sequence may
// follow.
func (m *CallMatcher) Done() bool { return m.seg == acceptAll }

// Feed advances over text; false if the output can no longer follow the
// grammar (m is then undefined).
func (m *CallMatcher) Feed(text string) bool {
	for i := range len(text) {
		if !m.feed(text[i]) {
			return false
		}
	}
	return true
}

// Allows reports whether text may follow, leaving m unchanged.
func (m *CallMatcher) Allows(text string) bool {
	if m.scratch == nil {
		m.scratch = &CallMatcher{}
	}
	m.scratch.CopyFrom(m)
	return m.scratch.Feed(text)
}

// Completes reports whether text may follow and completes the call.
func (m *CallMatcher) Completes(text string) bool {
	if m.scratch == nil {
		m.scratch = &CallMatcher{}
	}
	m.scratch.CopyFrom(m)
	return m.scratch.Feed(text) && m.scratch.Done()
}

func (m *CallMatcher) enter(i int) {
	m.seg, m.pos, m.ref = i, 0, 0
	m.tail = m.tail[:0]
	m.gq, m.gstr, m.gkey = 0, false, false
	if i != acceptAll {
		if k := m.g.segs[i].kind; k == segJSON || k == segGemma {
			m.json = JSONRecognizer{stack: m.json.stack[:0]}
			m.json.Feed('{')
		}
	}
}

// push records c in the tail and reports whether the tail now ends with
// one of the forbidden substrings.
func (m *CallMatcher) push(c byte, forbid []string) bool {
	if n := m.g.maxTail; len(m.tail) >= 2*n && n > 0 {
		m.tail = append(m.tail[:0], m.tail[len(m.tail)-n+1:]...)
	}
	m.tail = append(m.tail, c)
	for _, f := range forbid {
		if hasSuffix(m.tail, f) {
			return true
		}
	}
	return false
}

func hasSuffix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[len(b)-len(s):]) == s
}

func (m *CallMatcher) feed(c byte) bool {
	if m.seg == acceptAll {
		return false
	}
	sg := &m.g.segs[m.seg]
	switch sg.kind {
	case segChoice:
		matched := sg.alts[m.ref][:m.pos]
		found := -1
		for i, a := range sg.alts {
			if len(a) > m.pos && a[m.pos] == c && a[:m.pos] == matched {
				found = i
				break
			}
		}
		if found < 0 {
			return false
		}
		m.ref = found
		m.pos++
		matched = sg.alts[found][:m.pos]
		for i, a := range sg.alts {
			if a == matched {
				m.enter(sg.next[i])
				break
			}
		}
		return true
	case segUntil:
		if strings.IndexByte(sg.deny, c) >= 0 {
			return false
		}
		m.pos++
		forbidden := m.push(c, sg.forbid)
		if hasSuffix(m.tail, sg.end) {
			if sg.nonEmpty && m.pos == len(sg.end) {
				return false
			}
			m.enter(sg.next[0])
			return true
		}
		return !forbidden
	case segJSON:
		if !m.json.Feed(c) || len(sg.forbid) > 0 && m.push(c, sg.forbid) {
			return false
		}
		if m.json.Done() {
			m.enter(sg.next[0])
		}
		return true
	case segGemma:
		return m.feedGemma(c, sg)
	}
	return false
}

// maxGemmaDepth is the nesting the Gemma parser accepts.
const maxGemmaDepth = 64

func isGemmaKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}

// feedGemma reads Gemma's object syntax by feeding the JSON recognizer
// its JSON transliteration: <|"|> is '"', a bare key is a quoted one.
func (m *CallMatcher) feedGemma(c byte, sg *segment) bool {
	json := func(b byte) bool {
		wasNum := m.json.mode == jNumber
		if !m.json.Feed(b) || m.json.Depth() > maxGemmaDepth {
			return false
		}
		if m.json.mode == jNumber {
			// The parser reads numbers with strconv.ParseFloat, which
			// refuses what overflows a float64: at most 200 integer
			// digits and a two-digit exponent keep below 1e300.
			if !wasNum {
				m.gint, m.gexp = 0, 0
			}
			switch {
			case b < '0' || b > '9':
			case m.json.num == nZero || m.json.num == nInt:
				m.gint++
			case m.json.num == nExpDigit:
				m.gexp++
			}
			if m.gint > 200 || m.gexp > 2 {
				return false
			}
		}
		if m.json.Done() {
			m.enter(sg.next[0])
		}
		return true
	}
	switch {
	case m.gstr:
		if m.push(c, sg.forbid) {
			return false
		}
		if c == gemmaQuote[m.gq] {
			if m.gq++; m.gq == len(gemmaQuote) {
				m.gq, m.gstr = 0, false
				return json('"')
			}
			return true
		}
		m.gq = 0
		if c == '<' {
			m.gq = 1
		}
		return true
	case m.gq > 0:
		if c != gemmaQuote[m.gq] {
			return false
		}
		if m.gq++; m.gq == len(gemmaQuote) {
			m.gq, m.gstr = 0, true
			m.tail = m.tail[:0]
		}
		return true
	case m.gkey:
		switch {
		case isGemmaKeyByte(c):
			return true
		case c == ':':
			m.gkey = false
			return json('"') && json(':')
		}
		return false
	case c == '<':
		// Only a quote starts with '<': the JSON state must take '"' now,
		// so that no prefix of the quote is a dead end.
		m.probe.CopyFrom(&m.json)
		if !m.probe.Feed('"') {
			return false
		}
		m.json.CopyFrom(&m.probe)
		m.gq = 1
		return true
	case isGemmaKeyByte(c) && m.json.expectsKey():
		m.gkey = true
		return json('"') && json('a')
	case c == '"':
		return false // Gemma strings are quoted with <|"|>
	}
	return json(c)
}
