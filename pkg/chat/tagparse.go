package chat

import (
	"errors"
	"strings"
)

// tagSpec describes a format whose reasoning and tool calls are delimited
// by literal markers in the decoded text.
type tagSpec struct {
	thinkOpen  []string            // open reasoning, only before any content
	thinkClose []string            // close reasoning
	toolOpen   []string            // open a tool-call block
	toolClose  map[string][]string // close markers for each open marker
	ignore     []string            // end-of-turn tokens, dropped
	// decode turns the text between a tool block's markers into calls.
	decode func(p *tagParser, body string, atEOF bool) ([]ToolCall, error)
	// inValue reports that a tool block's body ends inside an argument
	// value (a JSON string, an XML parameter), where a close marker is
	// text the model is quoting, not the end of the block.
	inValue func(body string) bool
}

var tagSpecs = map[Format]tagSpec{
	FormatPlain: {
		thinkOpen:  []string{"<think>"},
		thinkClose: []string{"</think>"},
	},
	FormatQwen3: {
		thinkOpen:  []string{"<think>"},
		thinkClose: []string{"</think>"},
		toolOpen:   []string{"<tool_call>"},
		toolClose:  map[string][]string{"<tool_call>": {"</tool_call>"}},
		ignore:     []string{"<|im_end|>", "<|endoftext|>"},
		decode:     decodeJSONCall,
		inValue:    inJSONString,
	},
	FormatQwen3Coder: {
		thinkOpen:  []string{"<think>"},
		thinkClose: []string{"</think>"},
		toolOpen:   []string{"<tool_call>"},
		toolClose:  map[string][]string{"<tool_call>": {"</tool_call>"}},
		ignore:     []string{"<|im_end|>", "<|endoftext|>"},
		decode:     decodeXMLCalls,
		inValue:    func(b string) bool { return openAfter(b, "<parameter=", "</parameter>") },
	},
	FormatGemma4: {
		thinkOpen:  []string{"<|channel>thought"},
		thinkClose: []string{"<channel|>"},
		toolOpen:   []string{"<|tool_call>"},
		toolClose:  map[string][]string{"<|tool_call>": {"<tool_call|>"}},
		ignore:     []string{"<turn|>", "<eos>"},
		decode:     decodeGemmaCall,
		inValue:    func(b string) bool { return strings.Count(b, gemmaQuote)%2 == 1 },
	},
	FormatDeepSeekDSML: {
		thinkOpen:  []string{"<think>"},
		thinkClose: []string{"</think>"},
		toolOpen:   []string{"<｜DSML｜tool_calls>", "<｜DSML｜function_calls>"},
		toolClose: map[string][]string{
			"<｜DSML｜tool_calls>":     {"</｜DSML｜tool_calls>"},
			"<｜DSML｜function_calls>": {"</｜DSML｜function_calls>"},
		},
		ignore:  []string{"<｜end▁of▁sentence｜>"},
		decode:  decodeDSMLCalls,
		inValue: func(b string) bool { return openAfter(b, "<｜DSML｜parameter", "</｜DSML｜parameter>") },
	},
}

const (
	stContent = iota
	stReasoning
	stTool
)

type tagParser struct {
	format    Format
	spec      tagSpec
	opts      ParserOptions
	buf       string
	state     int
	content   textSink
	reasoning textSink
	toolOpen  string
	toolBody  strings.Builder
	calls     int
	tools     toolSchemas
	// Marker sets per state, built once.
	contentFirst, contentLater, reasoningMarkers []string
}

func newTagParser(format Format, opts ParserOptions) *tagParser {
	spec, ok := tagSpecs[format]
	if !ok {
		format, spec = FormatPlain, tagSpecs[FormatPlain]
	}
	p := &tagParser{format: format, spec: spec, opts: opts, tools: parseToolSchemas(opts.Tools)}
	p.contentLater = append(append([]string{}, spec.toolOpen...), spec.ignore...)
	p.contentFirst = append(append([]string{}, p.contentLater...), spec.thinkOpen...)
	p.reasoningMarkers = append(append([]string{}, spec.thinkClose...), spec.ignore...)
	p.content.kind = EventContent
	p.reasoning.kind = EventReasoning
	if opts.ReasoningOpen {
		p.state = stReasoning
	}
	return p
}

func (p *tagParser) Feed(text string) []Event {
	p.buf += text
	return p.process(nil, false)
}

func (p *tagParser) Finish() []Event {
	out := p.process(nil, true)
	if p.state == stTool {
		// The response ended inside a tool block: decode what is there
		// (models often stop right after the last argument), else keep it.
		body := p.toolBody.String() + p.buf
		p.buf = ""
		out = p.finishTool(out, body, "", true)
	}
	p.content.endSection()
	p.reasoning.endSection()
	return out
}

func (p *tagParser) process(out []Event, final bool) []Event {
	for {
		switch p.state {
		case stContent:
			markers := p.contentLater
			if !p.content.started && p.calls == 0 {
				markers = p.contentFirst
			}
			i, m := findMarker(p.buf, markers)
			if i >= 0 && contains(p.spec.thinkOpen, m) && strings.TrimSpace(p.buf[:i]) != "" {
				// Reasoning opens only before any content.
				markers = p.contentLater
				i, m = findMarker(p.buf, markers)
			}
			if i < 0 {
				out = p.flush(out, &p.content, markers, final)
				return out
			}
			out = p.content.emit(p.buf[:i], out)
			p.buf = p.buf[i+len(m):]
			switch {
			case contains(p.spec.ignore, m):
			case contains(p.spec.thinkOpen, m):
				p.state = stReasoning
			default:
				p.content.endSection()
				p.state, p.toolOpen = stTool, m
				p.toolBody.Reset()
			}
		case stReasoning:
			markers := p.reasoningMarkers
			i, m := findMarker(p.buf, markers)
			if i < 0 {
				out = p.flush(out, &p.reasoning, markers, final)
				return out
			}
			out = p.reasoning.emit(p.buf[:i], out)
			p.buf = p.buf[i+len(m):]
			if contains(p.spec.thinkClose, m) {
				p.reasoning.endSection()
				p.state = stContent
			}
		case stTool:
			closes := p.spec.toolClose[p.toolOpen]
			i, m := findMarker(p.buf, closes)
			if i < 0 {
				if final {
					return out
				}
				hold := heldSuffix(p.buf, closes)
				p.toolBody.WriteString(p.buf[:len(p.buf)-hold])
				p.buf = p.buf[len(p.buf)-hold:]
				return out
			}
			body := p.toolBody.String() + p.buf[:i]
			if p.spec.inValue != nil && p.spec.inValue(body) {
				// Quoted close marker: keep it as body text and go on.
				p.toolBody.WriteString(p.buf[:i+len(m)])
				p.buf = p.buf[i+len(m):]
				continue
			}
			p.buf = p.buf[i+len(m):]
			out = p.finishTool(out, body, m, false)
		}
	}
}

// flush emits all of buf except a suffix that may become a marker.
func (p *tagParser) flush(out []Event, sink *textSink, markers []string, final bool) []Event {
	hold := 0
	if !final {
		hold = heldSuffix(p.buf, markers)
	}
	out = sink.emit(p.buf[:len(p.buf)-hold], out)
	p.buf = p.buf[len(p.buf)-hold:]
	return out
}

func (p *tagParser) finishTool(out []Event, body, closeMarker string, atEOF bool) []Event {
	p.state = stContent
	clean := body
	for _, ig := range p.spec.ignore {
		clean = strings.ReplaceAll(clean, ig, "")
	}
	calls, err := p.spec.decode(p, clean, atEOF)
	if err == nil && len(calls) == 0 {
		err = errors.New("no call in the block")
	}
	if err != nil {
		raw := p.toolOpen + body + closeMarker
		debugDegrade(p.opts.Logger, p.format, err.Error(), raw)
		return p.content.emit(raw, out)
	}
	for _, c := range calls {
		c.ID = p.opts.NewID()
		out = append(out, callEvents(p.calls, c)...)
		p.calls++
	}
	// Text after a call starts a new section: no leading newlines.
	p.content.reset()
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// inJSONString reports whether s ends inside a JSON string literal.
func inJSONString(s string) bool {
	in, esc := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case in && c == '\\':
			esc = true
		case c == '"':
			in = !in
		}
	}
	return in
}

// openAfter reports whether the last open marker in s has no close after it.
func openAfter(s, open, close string) bool {
	return strings.LastIndex(s, open) > strings.LastIndex(s, close)
}
