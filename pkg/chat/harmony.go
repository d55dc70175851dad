package chat

import (
	"errors"
	"strings"
)

// Harmony (gpt-oss) output is a sequence of messages:
//
//	[<|start|>assistant][ to=RECIPIENT]<|channel|>CHANNEL[ to=RECIPIENT][ <|constrain|>json]<|message|>BODY<|end|>|<|call|>|<|return|>
//
// The generation prompt ends with "<|start|>assistant", so output begins
// inside the first header. analysis bodies are reasoning, final and
// commentary bodies content, and a body addressed to a recipient
// (to=functions.NAME) is a tool call — on the commentary channel as the
// format intends, or on the analysis channel, where gpt-oss-120b puts a
// large share of its real calls.

const (
	hrStart     = "<|start|>"
	hrChannel   = "<|channel|>"
	hrMessage   = "<|message|>"
	hrConstrain = "<|constrain|>"
	hrEnd       = "<|end|>"
	hrCall      = "<|call|>"
	hrReturn    = "<|return|>"
)

var (
	harmonyTerminators = []string{hrEnd, hrCall, hrReturn, hrStart}
	harmonyStarts      = []string{hrStart, hrChannel}
	// What a header may begin with; anything else means the model is not
	// writing harmony, and its text is content.
	harmonyHeaderPrefixes = []string{hrChannel, hrStart, hrConstrain, hrMessage, "to=", "assistant"}
)

const maxHarmonyHeader = 512

const (
	hsHeader = iota
	hsBody
	hsBetween
)

type harmonyParser struct {
	opts      ParserOptions
	buf       string
	state     int
	header    strings.Builder
	channel   string
	recipient string
	body      strings.Builder
	strayText strings.Builder
	calls     int
}

func newHarmonyParser(opts ParserOptions) *harmonyParser {
	return &harmonyParser{opts: opts}
}

func (p *harmonyParser) Feed(text string) []Event {
	p.buf += text
	return p.process(nil, false)
}

func (p *harmonyParser) Finish() []Event {
	out := p.process(nil, true)
	switch p.state {
	case hsHeader:
		if h := p.header.String() + p.buf; strings.TrimSpace(h) != "" {
			debugDegrade(p.opts.Logger, FormatHarmony, "response ended inside a message header", h)
			out = append(out, Event{Kind: EventContent, Text: h})
		}
	case hsBody:
		// Ended without a terminator (stop token not fed): close the message.
		out = p.endMessage(out)
	}
	out = p.flushStray(out)
	p.buf = ""
	return out
}

func (p *harmonyParser) process(out []Event, final bool) []Event {
	for {
		switch p.state {
		case hsHeader:
			i := strings.Index(p.buf, hrMessage)
			if i < 0 {
				hold := 0
				if !final {
					hold = heldSuffix(p.buf, []string{hrMessage})
				}
				p.header.WriteString(p.buf[:len(p.buf)-hold])
				p.buf = p.buf[len(p.buf)-hold:]
				// Only text that is surely header counts: the held suffix may
				// still become <|message|>. Plausibility is monotone (an
				// implausible prefix never becomes plausible), so the verdict
				// does not depend on chunking.
				if !p.plausibleHeader(p.header.String()) {
					out = p.notHarmony(out)
					continue
				}
				return out
			}
			p.header.WriteString(p.buf[:i])
			p.buf = p.buf[i+len(hrMessage):]
			h := p.header.String()
			p.header.Reset()
			if !p.plausibleHeader(h) {
				p.buf = h + hrMessage + p.buf
				out = p.notHarmony(out)
				continue
			}
			p.channel, p.recipient = parseHarmonyHeader(h)
			p.body.Reset()
			p.state = hsBody
		case hsBody:
			i, m := findMarker(p.buf, harmonyTerminators)
			if i < 0 {
				hold := 0
				if !final {
					hold = heldSuffix(p.buf, harmonyTerminators)
				}
				out = p.bodyText(p.buf[:len(p.buf)-hold], out)
				p.buf = p.buf[len(p.buf)-hold:]
				return out
			}
			out = p.bodyText(p.buf[:i], out)
			p.buf = p.buf[i+len(m):]
			out = p.endMessage(out)
			if m == hrStart {
				p.state = hsHeader
			}
		case hsBetween:
			i, m := findMarker(p.buf, harmonyStarts)
			if i < 0 {
				hold := 0
				if !final {
					hold = heldSuffix(p.buf, harmonyStarts)
				}
				out = p.stray(p.buf[:len(p.buf)-hold], out)
				p.buf = p.buf[len(p.buf)-hold:]
				return out
			}
			out = p.stray(p.buf[:i], out)
			out = p.flushStray(out)
			if m == hrStart {
				p.buf = p.buf[i+len(m):]
			} else {
				p.buf = p.buf[i:] // the channel marker is part of the header
			}
			p.state = hsHeader
		}
	}
}

// plausibleHeader reports whether h can still be (the start of) a harmony
// header.
func (p *harmonyParser) plausibleHeader(h string) bool {
	t := strings.TrimLeft(h, " \t\r\n")
	if t == "" {
		return true
	}
	if len(h) > maxHarmonyHeader {
		return false
	}
	for _, pre := range harmonyHeaderPrefixes {
		if strings.HasPrefix(t, pre) || strings.HasPrefix(pre, t) {
			return true
		}
	}
	return false
}

// notHarmony treats the pending header text as a final-channel body: the
// model wrote plain text.
func (p *harmonyParser) notHarmony(out []Event) []Event {
	h := p.header.String()
	p.header.Reset()
	debugDegrade(p.opts.Logger, FormatHarmony, "text outside harmony messages", h+p.buf)
	p.buf = h + p.buf
	p.channel, p.recipient = "final", ""
	p.body.Reset()
	p.state = hsBody
	return out
}

// parseHarmonyHeader extracts the channel and recipient from a header such
// as "assistant to=functions.f<|channel|>commentary json" or
// "<|channel|>commentary to=functions.f <|constrain|>json".
func parseHarmonyHeader(h string) (channel, recipient string) {
	h = strings.ReplaceAll(h, hrStart, " ")
	h = strings.ReplaceAll(h, hrChannel, " "+hrChannel+" ")
	h = strings.ReplaceAll(h, hrConstrain, " "+hrConstrain+" ")
	fields := strings.Fields(h)
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		switch {
		case f == hrChannel && i+1 < len(fields):
			channel = fields[i+1]
			i++
		case f == hrConstrain && i+1 < len(fields):
			i++
		case strings.HasPrefix(f, "to="):
			recipient = strings.TrimPrefix(f, "to=")
		}
	}
	switch recipient {
	case "assistant", "user", "all":
		recipient = ""
	}
	return channel, recipient
}

func (p *harmonyParser) bodyText(s string, out []Event) []Event {
	if s == "" {
		return out
	}
	if p.recipient != "" {
		p.body.WriteString(s)
		return out
	}
	kind := EventContent
	if p.channel == "analysis" {
		kind = EventReasoning
	}
	return append(out, Event{Kind: kind, Text: s})
}

func (p *harmonyParser) endMessage(out []Event) []Event {
	p.state = hsBetween
	if p.recipient == "" {
		return out
	}
	body := p.body.String()
	p.body.Reset()
	name := strings.TrimPrefix(p.recipient, "functions.")
	args, ok := compactJSON([]byte(body))
	var err error
	switch {
	case name == "":
		err = errors.New("empty recipient")
	case !ok:
		err = errors.New("tool call arguments are not JSON")
	case !strings.HasPrefix(args, "{"):
		err = errors.New("tool call arguments are not a JSON object")
	}
	if err != nil {
		debugDegrade(p.opts.Logger, FormatHarmony, err.Error(), body)
		if body != "" {
			out = append(out, Event{Kind: EventContent, Text: body})
		}
		return out
	}
	call := ToolCall{ID: p.opts.NewID(), Name: name, Arguments: args}
	out = append(out, callEvents(p.calls, call)...)
	p.calls++
	return out
}

// stray collects text between messages; flushStray drops the stop tokens
// a caller may have fed and keeps anything else as content.
func (p *harmonyParser) stray(s string, out []Event) []Event {
	p.strayText.WriteString(s)
	return out
}

func (p *harmonyParser) flushStray(out []Event) []Event {
	s := p.strayText.String()
	p.strayText.Reset()
	for _, t := range []string{hrEnd, hrCall, hrReturn} {
		s = strings.ReplaceAll(s, t, "")
	}
	if strings.TrimSpace(s) == "" {
		return out
	}
	debugDegrade(p.opts.Logger, FormatHarmony, "text between harmony messages", s)
	return append(out, Event{Kind: EventContent, Text: s})
}
