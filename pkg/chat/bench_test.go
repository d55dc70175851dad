package chat_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maniac-ai/mach/pkg/chat"
)

// BenchmarkRender renders the longest fixture conversation with the gpt-oss
// template (macros, tool namespace) and reports output MB/s.
func BenchmarkRender(b *testing.B) {
	dir := filepath.Join(tokenizerDir, "gptoss")
	requireFixture(b, filepath.Join(dir, "tokenizer_config.json"))
	tpl, err := chat.LoadFile(dir, filepath.Join(chatDir, "templates", "gptoss.jinja"))
	if err != nil {
		b.Fatal(err)
	}
	var conv conversation
	for _, c := range readJSONL[conversation](b, filepath.Join(chatDir, "conversations.jsonl")) {
		if c.Name == "reasoning_effort_high_tools" {
			conv = c
		}
	}
	msgs := toMessages(b, conv.Messages)
	opts := chat.Options{AddGenerationPrompt: true, Tools: conv.Tools, Kwargs: kwargs(b, conv.Kwargs), Now: time.Unix(0, 0)}
	out, err := tpl.Render(msgs, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		if _, err := tpl.Render(msgs, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParserStream feeds a long Qwen3.5 response in 4-byte chunks (about
// a token each) and reports MB/s; a decode loop produces well under 1 MB/s.
func BenchmarkParserStream(b *testing.B) {
	resp := "I should look this up.\n</think>\n\n" + strings.Repeat("Some streamed answer text, token by token. ", 2000) +
		"\n<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n</parameter>\n</function>\n</tool_call>"
	var chunks []string
	for i := 0; i < len(resp); i += 4 {
		chunks = append(chunks, resp[i:min(i+4, len(resp))])
	}
	tools := []json.RawMessage{weatherTool}
	b.SetBytes(int64(len(resp)))
	for b.Loop() {
		p := chat.NewParser(chat.FormatQwen3Coder, chat.ParserOptions{Tools: tools, ReasoningOpen: true})
		n := 0
		for _, c := range chunks {
			n += len(p.Feed(c))
		}
		if n+len(p.Finish()) == 0 {
			b.Fatal("no events")
		}
	}
}
