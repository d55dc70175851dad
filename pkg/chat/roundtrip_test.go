package chat_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/stretchr/testify/require"
)

// TestRenderedCallsParseBack takes tool calls as the reference templates
// render them into history (the format the models were trained to emit) and
// parses them back with the matching output parser.
func TestRenderedCallsParseBack(t *testing.T) {
	convs := map[string]conversation{}
	for _, c := range readJSONL[conversation](t, filepath.Join(chatDir, "conversations.jsonl")) {
		convs[c.Name] = c
	}
	for _, c := range []struct {
		template   string
		format     chat.Format
		open       bool
		start, end string
		convs      []string
	}{
		{"qwen3", chat.FormatQwen3, false, "<|im_start|>assistant\n", "<|im_end|>", []string{"tool_call_roundtrip", "parallel_tool_calls", "tool_call_with_content", "tool_args_special_chars"}},
		{"qwen3_6", chat.FormatQwen3Coder, false, "<|im_start|>assistant\n", "<|im_end|>", []string{"tool_call_roundtrip", "parallel_tool_calls", "tool_call_with_content", "tool_args_special_chars"}},
		{"gptoss", chat.FormatHarmony, false, "<|start|>assistant", "<|call|>", []string{"tool_call_roundtrip", "tool_call_with_content", "tool_args_special_chars"}},
		{"gemma4", chat.FormatGemma4, false, "<|turn>model\n", "<turn|>", []string{"tool_call_roundtrip", "parallel_tool_calls", "tool_call_with_content", "tool_args_special_chars"}},
		{"deepseek_v3_2", chat.FormatDeepSeekDSML, false, "</think>", "<｜end▁of▁sentence｜>", []string{"tool_call_roundtrip", "parallel_tool_calls", "tool_call_with_content", "tool_args_special_chars"}},
	} {
		recs := map[string]expected{}
		for _, r := range readJSONL[expected](t, filepath.Join(chatDir, c.template+".expected.jsonl")) {
			recs[r.Name] = r
		}
		for _, name := range c.convs {
			rec := recs[name]
			require.NotNil(t, rec.Text, "%s/%s", c.template, name)
			text := *rec.Text
			start := c.start
			if c.format == chat.FormatHarmony {
				// The tool-call message, after any analysis message; the
				// generation prompt ends with "<|start|>assistant".
				start = "<|start|>assistant to="
			}
			i := strings.Index(text, start)
			if c.format == chat.FormatDeepSeekDSML {
				// Assistant text follows the </think> closest before the calls.
				i = strings.LastIndex(text[:strings.LastIndex(text, "<｜DSML｜function_calls>")], start)
			}
			require.GreaterOrEqual(t, i, 0, "%s/%s: no %q", c.template, name, start)
			seg := text[i+len(c.start):]
			j := strings.Index(seg, c.end)
			require.GreaterOrEqual(t, j, 0, "%s/%s: no %q", c.template, name, c.end)
			seg = seg[:j]

			var tools []json.RawMessage
			tools = append(tools, convs[name].Tools...)
			p := chat.NewParser(c.format, chat.ParserOptions{Tools: tools, ReasoningOpen: c.open})
			evs := append(p.Feed(seg), p.Finish()...)
			_, _, calls := chat.Collect(evs)

			want := toMessages(t, convs[name].Messages)
			var wantCalls []chat.ToolCall
			for _, m := range want {
				if m.Role == "assistant" && len(m.ToolCalls) > 0 {
					wantCalls = m.ToolCalls
					break
				}
			}
			if c.format == chat.FormatHarmony {
				wantCalls = wantCalls[:1] // the template renders one call per message
			}
			require.Len(t, calls, len(wantCalls), "%s/%s: %q", c.template, name, seg)
			for k := range calls {
				require.Equal(t, wantCalls[k].Name, calls[k].Name)
				require.JSONEq(t, wantCalls[k].Arguments, calls[k].Arguments, "%s/%s", c.template, name)
			}
		}
	}
}
