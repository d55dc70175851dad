package chat

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"strings"
)

// Format is a model family's output format: how it marks reasoning and how
// it writes tool calls.
type Format string

// The output formats mach parses.
const (
	// FormatPlain: content only, with an optional leading <think>…</think>.
	FormatPlain Format = "plain"
	// FormatQwen3: <think>…</think> and <tool_call>{"name":…,"arguments":…}</tool_call>
	// (Qwen3, Qwen3-2507; mlx-lm json_tools).
	FormatQwen3 Format = "qwen3"
	// FormatQwen3Coder: <think>…</think> and the XML form
	// <tool_call><function=NAME><parameter=P>VALUE</parameter></function></tool_call>
	// (Qwen3.5, Qwen3.6, Qwen3-Coder; mlx-lm qwen3_coder).
	FormatQwen3Coder Format = "qwen3_coder"
	// FormatHarmony: gpt-oss channels (analysis, commentary, final),
	// recipients to=functions.NAME, <|call|>, <|return|>.
	FormatHarmony Format = "harmony"
	// FormatGemma4: <|channel>thought…<channel|> and
	// <|tool_call>call:NAME{key:<|"|>v<|"|>,n:1}<tool_call|>.
	FormatGemma4 Format = "gemma4"
	// FormatDeepSeekDSML: <think>…</think> and <｜DSML｜tool_calls> blocks of
	// <｜DSML｜invoke name="F"> with <｜DSML｜parameter name="p" string="…">
	// (DeepSeek-V4; V3.2's function_calls wrapper too).
	FormatDeepSeekDSML Format = "deepseek_dsml"
)

// Formats lists every format NewParser accepts.
func Formats() []Format {
	return []Format{FormatPlain, FormatQwen3, FormatQwen3Coder, FormatHarmony, FormatGemma4, FormatDeepSeekDSML}
}

// EventKind says what an Event carries.
type EventKind int

// Event kinds. A tool call is reported as Start (ID, Name), one or more Args
// deltas, and End (the complete call), always together once the call is
// complete and valid, so that malformed calls can still degrade to content.
const (
	EventContent EventKind = iota
	EventReasoning
	EventToolCallStart
	EventToolCallArgs
	EventToolCallEnd
)

func (k EventKind) String() string {
	switch k {
	case EventContent:
		return "content"
	case EventReasoning:
		return "reasoning"
	case EventToolCallStart:
		return "tool_call_start"
	case EventToolCallArgs:
		return "tool_call_args"
	case EventToolCallEnd:
		return "tool_call_end"
	}
	return "unknown"
}

// Event is one piece of parsed output.
type Event struct {
	Kind EventKind
	// Text is the content, reasoning or arguments delta.
	Text string
	// Index numbers the tool calls of one response from 0.
	Index int
	// Call is set on Start (ID and Name) and End (complete).
	Call ToolCall
}

// ParserOptions configure a parser.
type ParserOptions struct {
	// Tools are the request's OpenAI tool objects; formats that write
	// arguments as text (Qwen3-Coder XML, DSML without string=) use the
	// parameter types to turn values into JSON.
	Tools []json.RawMessage
	// ReasoningOpen says the prompt already opened the reasoning block (the
	// generation prompt ends with "<think>\n", or Gemma's thought channel),
	// so output starts as reasoning. See PromptOpensReasoning.
	ReasoningOpen bool
	// NewID makes tool-call ids; the default is "call_" and 24 random
	// alphanumerics.
	NewID func() string
	// Logger receives a debug record whenever malformed output degrades to
	// plain content; nil means slog.Default().
	Logger *slog.Logger
}

// Parser turns model output into events. Feed takes decoded text in any
// chunking (a token, a byte, a whole response); Finish flushes what is held
// back and ends the response. The concatenated deltas of each kind do not
// depend on the chunking; where the chunks fall only changes how the deltas
// are split (see Coalesce).
type Parser interface {
	Feed(text string) []Event
	Finish() []Event
}

// NewParser returns a parser for format; an unknown format parses as plain.
func NewParser(format Format, opts ParserOptions) Parser {
	if opts.NewID == nil {
		opts.NewID = randomCallID
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if format == FormatHarmony {
		return newHarmonyParser(opts)
	}
	return newTagParser(format, opts)
}

// DetectFormat picks the output format from the config.json model_type,
// falling back to what the chat template writes.
func DetectFormat(modelType string, tmpl *Template) Format {
	switch modelType {
	case "gpt_oss":
		return FormatHarmony
	case "qwen3_5_moe", "qwen3_5", "qwen3_next":
		return FormatQwen3Coder
	case "gemma4", "gemma4_text":
		return FormatGemma4
	case "deepseek_v4", "deepseek_v32":
		return FormatDeepSeekDSML
	case "qwen3_moe", "qwen3":
		if tmpl != nil && strings.Contains(tmpl.Source, "<function=") {
			return FormatQwen3Coder
		}
		return FormatQwen3
	}
	if tmpl == nil {
		return FormatPlain
	}
	src := tmpl.Source
	switch {
	case strings.Contains(src, "<|channel|>"):
		return FormatHarmony
	case strings.Contains(src, "DSML"):
		return FormatDeepSeekDSML
	case strings.Contains(src, "<|tool_call>"):
		return FormatGemma4
	case strings.Contains(src, "<function="):
		return FormatQwen3Coder
	case strings.Contains(src, "<tool_call>"):
		return FormatQwen3
	}
	return FormatPlain
}

// PromptOpensReasoning reports whether a rendered prompt leaves the model
// inside its reasoning block (set ParserOptions.ReasoningOpen from it).
func PromptOpensReasoning(format Format, prompt string) bool {
	switch format {
	case FormatQwen3, FormatQwen3Coder, FormatDeepSeekDSML, FormatPlain:
		p := strings.TrimRight(prompt, "\n")
		return strings.HasSuffix(p, "<think>")
	case FormatGemma4:
		p := strings.TrimRight(prompt, "\n")
		return strings.HasSuffix(p, "<|channel>thought")
	}
	return false
}

// Collect folds events into the final message fields.
func Collect(events []Event) (content, reasoning string, calls []ToolCall) {
	var c, r strings.Builder
	for _, e := range events {
		switch e.Kind {
		case EventContent:
			c.WriteString(e.Text)
		case EventReasoning:
			r.WriteString(e.Text)
		case EventToolCallEnd:
			calls = append(calls, e.Call)
		}
	}
	return c.String(), r.String(), calls
}

// Coalesce merges adjacent content, reasoning and argument deltas (of the
// same call), giving the chunking-independent form of an event sequence.
func Coalesce(events []Event) []Event {
	var out []Event
	for _, e := range events {
		if e.Text == "" && (e.Kind == EventContent || e.Kind == EventReasoning) {
			continue
		}
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.Kind == e.Kind && (e.Kind == EventContent || e.Kind == EventReasoning || e.Kind == EventToolCallArgs && last.Index == e.Index) {
				last.Text += e.Text
				continue
			}
		}
		out = append(out, e)
	}
	return out
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randomCallID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return "call_" + string(b[:])
}

// ---- shared streaming machinery ----------------------------------------------

// findMarker returns the earliest marker in s (the longest at equal
// positions) and its index, or -1.
func findMarker(s string, markers []string) (int, string) {
	best, which := -1, ""
	for _, m := range markers {
		if i := strings.Index(s, m); i >= 0 && (best < 0 || i < best || i == best && len(m) > len(which)) {
			best, which = i, m
		}
	}
	return best, which
}

// heldSuffix is the length of the longest suffix of s that is a proper
// prefix of some marker: text that may still turn into a marker.
func heldSuffix(s string, markers []string) int {
	// Markers start with '<'; without one near the end nothing is held.
	if i := strings.LastIndexByte(s, '<'); i < 0 || len(s)-i > 32 {
		return 0
	}
	n := 0
	for _, m := range markers {
		for k := min(len(m)-1, len(s)); k > n; k-- {
			if strings.HasSuffix(s, m[:k]) {
				n = k
				break
			}
		}
	}
	return n
}

// textSink emits content or reasoning with the whitespace policy of all
// formats: leading whitespace of a section is dropped, and trailing
// whitespace is held back until more text follows, so whitespace before a
// tool call or a section end (and at the end of the response) disappears.
type textSink struct {
	kind    EventKind
	started bool
	pending string
}

func (s *textSink) emit(text string, out []Event) []Event {
	if text == "" {
		return out
	}
	text = s.pending + text
	s.pending = ""
	if !s.started {
		text = strings.TrimLeft(text, " \t\r\n")
		if text == "" {
			return out
		}
		s.started = true
	}
	trimmed := strings.TrimRight(text, " \t\r\n")
	s.pending = text[len(trimmed):]
	if trimmed != "" {
		out = append(out, Event{Kind: s.kind, Text: trimmed})
	}
	return out
}

// reset starts a new section: pending whitespace is dropped.
func (s *textSink) reset() { s.started, s.pending = false, "" }

// endSection drops held-back whitespace but keeps the section started.
func (s *textSink) endSection() { s.pending = "" }

func debugDegrade(log *slog.Logger, format Format, why, raw string) {
	if len(raw) > 200 {
		raw = raw[:200] + "…"
	}
	log.LogAttrs(context.Background(), slog.LevelDebug, "chat: malformed model output kept as content",
		slog.String("format", string(format)), slog.String("reason", why), slog.String("text", raw))
}

func callEvents(index int, call ToolCall) []Event {
	return []Event{
		{Kind: EventToolCallStart, Index: index, Call: ToolCall{ID: call.ID, Name: call.Name}},
		{Kind: EventToolCallArgs, Index: index, Text: call.Arguments},
		{Kind: EventToolCallEnd, Index: index, Call: call},
	}
}
