package chat_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/stretchr/testify/require"
)

var (
	weatherTool = json.RawMessage(`{"type":"function","function":{"name":"get_weather","description":"Get the weather.","parameters":{"type":"object","properties":{"location":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]},"days":{"type":"integer"}},"required":["location"]}}}`)
	searchTool  = json.RawMessage(`{"type":"function","function":{"name":"search_docs","description":"Search.","parameters":{"type":"object","properties":{"query":{"type":"string"},"limit":{"type":"integer"},"ratio":{"type":"number"},"tags":{"type":"array","items":{"type":"string"}},"filters":{"type":"object"},"exact":{"type":"boolean"},"note":{"type":["string","null"]}}}}}`)
)

type parserSample struct {
	name      string
	format    chat.Format
	open      bool // ParserOptions.ReasoningOpen
	input     string
	content   string
	reasoning string
	calls     []chat.ToolCall // IDs are call_0, call_1, …
}

var parserSamples = []parserSample{
	// Qwen3: <think> and JSON tool calls.
	{name: "qwen3/think_answer", format: chat.FormatQwen3,
		input:     "<think>\nLet me add.\n</think>\n\n2+2 = 4.<|im_end|>",
		reasoning: "Let me add.", content: "2+2 = 4."},
	{name: "qwen3/no_think", format: chat.FormatQwen3,
		input: "Just the answer.\n\nSecond paragraph.", content: "Just the answer.\n\nSecond paragraph."},
	{name: "qwen3/tool_call", format: chat.FormatQwen3,
		input:     "<think>\nNeed weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call><|im_end|>",
		reasoning: "Need weather.",
		calls:     []chat.ToolCall{{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Paris","unit":"celsius"}`}}},
	{name: "qwen3/content_and_two_calls", format: chat.FormatQwen3,
		input:   "Let me check both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Rome\", \"unit\": \"fahrenheit\"}}\n</tool_call>",
		content: "Let me check both.",
		calls: []chat.ToolCall{
			{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Paris"}`},
			{ID: "call_1", Name: "get_weather", Arguments: `{"location":"Rome","unit":"fahrenheit"}`}}},
	{name: "qwen3/arguments_as_string", format: chat.FormatQwen3,
		input: "<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": [1, 2]}\"}\n</tool_call>",
		calls: []chat.ToolCall{{ID: "call_0", Name: "f", Arguments: `{"a":[1,2]}`}}},
	{name: "qwen3/unclosed_call_at_eof", format: chat.FormatQwen3,
		input: "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Oslo\"}}\n",
		calls: []chat.ToolCall{{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Oslo"}`}}},
	{name: "qwen3/malformed_json_degrades", format: chat.FormatQwen3,
		input:   "Trying.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": }\n</tool_call>",
		content: "Trying.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": }\n</tool_call>"},
	{name: "qwen3/tool_tag_inside_reasoning", format: chat.FormatQwen3,
		input:     "<think>\nI could write <tool_call> here.\n</think>\n\nNo call.",
		reasoning: "I could write <tool_call> here.", content: "No call."},
	{name: "qwen3/think_only_at_start", format: chat.FormatQwen3,
		input: "Answer with a literal <think> tag.", content: "Answer with a literal <think> tag."},
	{name: "qwen3/reasoning_open_no_close", format: chat.FormatQwen3, open: true,
		input: "Still thinking when the budget ran out", reasoning: "Still thinking when the budget ran out"},
	{name: "qwen3/unicode", format: chat.FormatQwen3,
		input:     "<think>\nПривет 世界 🌍\n</think>\n\nça va — 😀",
		reasoning: "Привет 世界 🌍", content: "ça va — 😀"},

	// Qwen3.5 / Qwen3.6: XML tool calls; the prompt opens <think>.
	{name: "qwen3_coder/call", format: chat.FormatQwen3Coder, open: true,
		input:     "I should call the tool.\n</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call><|im_end|>",
		reasoning: "I should call the tool.",
		calls:     []chat.ToolCall{{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Paris","days":3}`}}},
	{name: "qwen3_coder/typed_params", format: chat.FormatQwen3Coder,
		input: "<tool_call>\n<function=search_docs>\n<parameter=query>\nline one\nline \"two\" <b>\n</parameter>\n<parameter=limit>\n5\n</parameter>\n<parameter=ratio>\n0.5\n</parameter>\n<parameter=tags>\n[\"moe\", \"router\"]\n</parameter>\n<parameter=filters>\n{\"since\": \"2024-01-01\"}\n</parameter>\n<parameter=exact>\nTrue\n</parameter>\n<parameter=note>\n42\n</parameter>\n<parameter=unknown>\n7\n</parameter>\n</function>\n</tool_call>",
		calls: []chat.ToolCall{{ID: "call_0", Name: "search_docs",
			Arguments: `{"query":"line one\nline \"two\" <b>","limit":5,"ratio":0.5,"tags":["moe","router"],"filters":{"since":"2024-01-01"},"exact":true,"note":"42","unknown":"7"}`}}},
	{name: "qwen3_coder/two_functions_one_block", format: chat.FormatQwen3Coder,
		input: "<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n</parameter>\n</function>\n<function=get_weather>\n<parameter=location>\nRome\n</parameter>\n</function>\n</tool_call>",
		calls: []chat.ToolCall{
			{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Paris"}`},
			{ID: "call_1", Name: "get_weather", Arguments: `{"location":"Rome"}`}}},
	{name: "qwen3_coder/missing_parameter_close", format: chat.FormatQwen3Coder,
		input: "<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n<parameter=unit>\ncelsius\n</parameter>\n</function>\n</tool_call>",
		calls: []chat.ToolCall{{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Paris","unit":"celsius"}`}}},
	{name: "qwen3_coder/no_arguments", format: chat.FormatQwen3Coder,
		input: "<tool_call>\n<function=get_time>\n</function>\n</tool_call>",
		calls: []chat.ToolCall{{ID: "call_0", Name: "get_time", Arguments: `{}`}}},
	{name: "qwen3_coder/malformed_degrades", format: chat.FormatQwen3Coder,
		input: "Hmm <tool_call>\n<function=>\n</tool_call> done", content: "Hmm<tool_call>\n<function=>\n</tool_call> done"},

	// gpt-oss harmony; the prompt ends with "<|start|>assistant".
	{name: "harmony/analysis_final", format: chat.FormatHarmony,
		input:     "<|channel|>analysis<|message|>User asks 2+2. Simple.<|end|><|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>",
		reasoning: "User asks 2+2. Simple.", content: "2 + 2 = 4."},
	{name: "harmony/commentary_call", format: chat.FormatHarmony,
		input:     "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"location\":\"Paris\"}<|call|>",
		reasoning: "Need the weather.",
		calls:     []chat.ToolCall{{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Paris"}`}}},
	{name: "harmony/recipient_in_role", format: chat.FormatHarmony,
		input: " to=functions.get_weather<|channel|>commentary json<|message|>{\"location\": \"Oslo\", \"days\": 2}<|call|>",
		calls: []chat.ToolCall{{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Oslo","days":2}`}}},
	{name: "harmony/call_on_analysis_channel", format: chat.FormatHarmony,
		input: "<|channel|>analysis to=functions.get_weather <|constrain|>json<|message|>{\"location\":\"Rome\"}<|call|>",
		calls: []chat.ToolCall{{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Rome"}`}}},
	{name: "harmony/preamble_then_call", format: chat.FormatHarmony,
		input:   "<|channel|>commentary<|message|>Checking the weather for you.<|end|><|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{}<|call|>",
		content: "Checking the weather for you.",
		calls:   []chat.ToolCall{{ID: "call_0", Name: "get_time", Arguments: `{}`}}},
	{name: "harmony/no_terminator", format: chat.FormatHarmony,
		input: "<|channel|>final<|message|>Done, no stop token fed", content: "Done, no stop token fed"},
	{name: "harmony/plain_text", format: chat.FormatHarmony,
		input: "Hello there, no harmony at all.", content: "Hello there, no harmony at all."},
	{name: "harmony/malformed_arguments", format: chat.FormatHarmony,
		input:     "<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>{not json<|call|>",
		reasoning: "x", content: "{not json"},
	{name: "harmony/unicode_final", format: chat.FormatHarmony,
		input:   "<|channel|>final<|message|>Ünïcødé — 世界 🎉\n<|return|>",
		content: "Ünïcødé — 世界 🎉\n"},

	// Gemma 4.
	{name: "gemma4/thought_answer", format: chat.FormatGemma4,
		input:     "<|channel>thought\nThe user wants 2+2.<channel|>The answer is 4.<turn|>",
		reasoning: "The user wants 2+2.", content: "The answer is 4."},
	{name: "gemma4/call", format: chat.FormatGemma4,
		input: "<|tool_call>call:get_weather{location:<|\"|>Paris<|\"|>,unit:<|\"|>celsius<|\"|>}<tool_call|>",
		calls: []chat.ToolCall{{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Paris","unit":"celsius"}`}}},
	{name: "gemma4/nested_values", format: chat.FormatGemma4,
		input:   "Searching.<|tool_call>call:search_docs{exact:false,filters:{since:<|\"|>2024-01-01<|\"|>,strict:true},limit:10,query:<|\"|>a, b: {c} \"q\"<|\"|>,ratio:0.5,tags:[<|\"|>x<|\"|>,<|\"|>y<|\"|>]}<tool_call|><turn|>",
		content: "Searching.",
		calls: []chat.ToolCall{{ID: "call_0", Name: "search_docs",
			Arguments: `{"exact":false,"filters":{"since":"2024-01-01","strict":true},"limit":10,"query":"a, b: {c} \"q\"","ratio":0.5,"tags":["x","y"]}`}}},
	{name: "gemma4/malformed_degrades", format: chat.FormatGemma4,
		input: "<|tool_call>call:f{a:<|\"|>x}<tool_call|>", content: "<|tool_call>call:f{a:<|\"|>x}<tool_call|>"},

	// DeepSeek DSML; V4's prompt opens <think>.
	{name: "dsml/v4_call", format: chat.FormatDeepSeekDSML, open: true,
		input:     "Need the weather.</think>Let me check.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"location\" string=\"true\">Paris</｜DSML｜parameter>\n<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>",
		reasoning: "Need the weather.", content: "Let me check.",
		calls: []chat.ToolCall{{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Paris","days":3}`}}},
	{name: "dsml/v32_function_calls", format: chat.FormatDeepSeekDSML,
		input: "<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"search_docs\">\n<｜DSML｜parameter name=\"query\" string=\"true\">moe routing</｜DSML｜parameter>\n<｜DSML｜parameter name=\"filters\" string=\"false\">{\"since\": \"2024\", \"strict\": true}</｜DSML｜parameter>\n</｜DSML｜invoke>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"location\" string=\"true\">Rome</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>",
		calls: []chat.ToolCall{
			{ID: "call_0", Name: "search_docs", Arguments: `{"query":"moe routing","filters":{"since":"2024","strict":true}}`},
			{ID: "call_1", Name: "get_weather", Arguments: `{"location":"Rome"}`}}},
	{name: "dsml/truncated_close", format: chat.FormatDeepSeekDSML,
		input: "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"location\" string=\"true\">Oslo</｜DSML｜parameter>\n</｜DSML｜inv>",
		calls: []chat.ToolCall{{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Oslo"}`}}},
	{name: "dsml/no_string_attr_uses_schema", format: chat.FormatDeepSeekDSML,
		input: "<｜DSML｜tool_calls><｜DSML｜invoke name=\"get_weather\"><｜DSML｜parameter name=\"days\">4</｜DSML｜parameter></｜DSML｜invoke></｜DSML｜tool_calls>",
		calls: []chat.ToolCall{{ID: "call_0", Name: "get_weather", Arguments: `{"days":4}`}}},
	{name: "dsml/malformed_degrades", format: chat.FormatDeepSeekDSML,
		input:   "x<｜DSML｜tool_calls><｜DSML｜invoke>oops</｜DSML｜tool_calls>",
		content: "x<｜DSML｜tool_calls><｜DSML｜invoke>oops</｜DSML｜tool_calls>"},

	// Plain.
	{name: "plain/think", format: chat.FormatPlain,
		input: "<think>a\nb</think>\n\nc <tool_call> d", reasoning: "a\nb", content: "c <tool_call> d"},
}

func newTestParser(s parserSample) chat.Parser {
	n := 0
	return chat.NewParser(s.format, chat.ParserOptions{
		Tools:         []json.RawMessage{weatherTool, searchTool},
		ReasoningOpen: s.open,
		NewID:         func() string { id := fmt.Sprintf("call_%d", n); n++; return id },
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
}

// feed runs a parser over chunks and returns the coalesced events.
func feed(s parserSample, chunks ...string) []chat.Event {
	p := newTestParser(s)
	var evs []chat.Event
	for _, c := range chunks {
		evs = append(evs, p.Feed(c)...)
	}
	return chat.Coalesce(append(evs, p.Finish()...))
}

func TestParserSamples(t *testing.T) {
	for _, s := range parserSamples {
		t.Run(s.name, func(t *testing.T) {
			evs := feed(s, s.input)
			content, reasoning, calls := chat.Collect(evs)
			require.Equal(t, s.content, content, "content")
			require.Equal(t, s.reasoning, reasoning, "reasoning")
			require.Equal(t, s.calls, calls, "tool calls")
			for _, c := range calls {
				require.True(t, json.Valid([]byte(c.Arguments)), "arguments %q", c.Arguments)
			}
			// Every call is announced, its arguments streamed, then closed.
			var start, args, end int
			for _, e := range evs {
				switch e.Kind {
				case chat.EventToolCallStart:
					start++
					require.Equal(t, s.calls[e.Index].Name, e.Call.Name)
				case chat.EventToolCallArgs:
					args++
					require.Equal(t, s.calls[e.Index].Arguments, e.Text)
				case chat.EventToolCallEnd:
					end++
				}
			}
			require.Equal(t, len(s.calls), start)
			require.Equal(t, len(s.calls), args)
			require.Equal(t, len(s.calls), end)
		})
	}
}

// TestParserSplitEverywhere feeds each sample split at every byte boundary
// (and one byte at a time) and requires the same events as one feed.
func TestParserSplitEverywhere(t *testing.T) {
	for _, s := range parserSamples {
		t.Run(s.name, func(t *testing.T) {
			want := feed(s, s.input)
			for i := 0; i <= len(s.input); i++ {
				require.Equal(t, want, feed(s, s.input[:i], s.input[i:]), "split at byte %d", i)
			}
			bytes := make([]string, len(s.input))
			for i := 0; i < len(s.input); i++ {
				bytes[i] = s.input[i : i+1]
			}
			require.Equal(t, want, feed(s, bytes...), "one byte at a time")
		})
	}
}

func TestDetectFormat(t *testing.T) {
	for _, c := range []struct {
		modelType, source string
		want              chat.Format
	}{
		{"gpt_oss", "", chat.FormatHarmony},
		{"qwen3_moe", "<tool_call>\n{\"name\"", chat.FormatQwen3},
		{"qwen3_moe", "<tool_call>\n<function=", chat.FormatQwen3Coder},
		{"qwen3_5_moe", "", chat.FormatQwen3Coder},
		{"gemma4", "", chat.FormatGemma4},
		{"deepseek_v4", "", chat.FormatDeepSeekDSML},
		{"llama", "<|start|>assistant<|channel|>final", chat.FormatHarmony},
		{"llama", "｜DSML｜", chat.FormatDeepSeekDSML},
		{"llama", "<|tool_call>call:", chat.FormatGemma4},
		{"llama", "<tool_call>", chat.FormatQwen3},
		{"llama", "{{ messages }}", chat.FormatPlain},
	} {
		tmpl, err := chat.Parse(c.source, nil)
		require.NoError(t, err)
		require.Equal(t, c.want, chat.DetectFormat(c.modelType, tmpl), "%s %q", c.modelType, c.source)
	}
	require.Equal(t, chat.FormatPlain, chat.DetectFormat("llama", nil))
}

func TestPromptOpensReasoning(t *testing.T) {
	require.True(t, chat.PromptOpensReasoning(chat.FormatQwen3Coder, "<|im_start|>assistant\n<think>\n"))
	require.False(t, chat.PromptOpensReasoning(chat.FormatQwen3Coder, "<|im_start|>assistant\n<think>\n\n</think>\n\n"))
	require.True(t, chat.PromptOpensReasoning(chat.FormatDeepSeekDSML, "<｜Assistant｜><think>"))
	require.False(t, chat.PromptOpensReasoning(chat.FormatDeepSeekDSML, "<｜Assistant｜></think>"))
	require.True(t, chat.PromptOpensReasoning(chat.FormatGemma4, "<|turn>model\n<|channel>thought\n"))
	require.False(t, chat.PromptOpensReasoning(chat.FormatGemma4, "<|turn>model\n<|channel>thought\n<channel|>"))
	require.False(t, chat.PromptOpensReasoning(chat.FormatHarmony, "<|start|>assistant"))
}

// FuzzParsers feeds arbitrary output to every format in two chunks: no
// panic, valid JSON arguments, and the same events as one feed.
func FuzzParsers(f *testing.F) {
	for _, s := range parserSamples {
		f.Add(s.input, uint16(len(s.input)/2))
	}
	f.Fuzz(func(t *testing.T, input string, split uint16) {
		i := int(split) % (len(input) + 1)
		for _, format := range chat.Formats() {
			s := parserSample{format: format, input: input}
			whole := feed(s, input)
			require.Equal(t, whole, feed(s, input[:i], input[i:]), "%s split at %d", format, i)
			_, _, calls := chat.Collect(whole)
			for _, c := range calls {
				require.True(t, json.Valid([]byte(c.Arguments)), "%s arguments %q", format, c.Arguments)
			}
		}
	})
}
