package chat_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/stretchr/testify/require"
)

type forcedSample struct {
	name      string
	format    chat.Format
	names     []string // the choice: one for a named tool_choice
	open      bool     // the prompt opened reasoning
	text      string   // the exact forced text
	eosCloses string   // an end-of-sequence token text that may stand for the closing literal
	reasoning string
	call      chat.ToolCall // ID call_0
	bad       []string      // deviations the grammar refuses
}

var forcedSamples = []forcedSample{
	{name: "qwen3/named", format: chat.FormatQwen3, names: []string{"get_weather"},
		text: "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\", \"days\": 3}}\n</tool_call>",
		call: chat.ToolCall{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Paris","days":3}`},
		bad: []string{
			"<tool_call>\n{\"name\": \"search_docs\"", // wrong name
			"Sure. <tool_call>",                       // text before the call
			"\n<tool_call>",                           // even whitespace
			"<think>",                                 // no reasoning block
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": }",                          // malformed JSON
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": [1]",                                       // not an object
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"a\": \"<|im_end|>\"",                    // end-of-turn text inside
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>\n",                       // trailing text
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call><tool_call>",              // a second call
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}, \"x\": 1}",                             // extra member
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>",                           // the newline is literal
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"a\": 1} }\n</tool_call>",                // space outside the arguments
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"}}\n</tool_call>x", // trailing text
		}},
	{name: "qwen3/required_prefix_names", format: chat.FormatQwen3, names: []string{"get_weather", "get", "search_docs"},
		text: "<tool_call>\n{\"name\": \"get\", \"arguments\": {}}\n</tool_call>",
		call: chat.ToolCall{ID: "call_0", Name: "get", Arguments: `{}`},
		bad:  []string{"<tool_call>\n{\"name\": \"ge\"", "<tool_call>\n{\"name\": \"get_w\"", "<tool_call>\n{\"name\": \"other"}},
	{name: "qwen3/escaped_name", format: chat.FormatQwen3, names: []string{`say"hi\`},
		text: "<tool_call>\n{\"name\": \"say\\\"hi\\\\\", \"arguments\": {\"q\": \"é \\u00e9 </tool_call> x\"}}\n</tool_call>",
		call: chat.ToolCall{ID: "call_0", Name: `say"hi\`, Arguments: `{"q":"é \u00e9 </tool_call> x"}`},
		bad:  []string{"<tool_call>\n{\"name\": \"say\"hi"}},
	{name: "qwen3/reasoning_open", format: chat.FormatQwen3, names: []string{"get_weather"}, open: true,
		text:      "Paris weather needed.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"}}\n</tool_call>",
		reasoning: "Paris weather needed.",
		call:      chat.ToolCall{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Paris"}`},
		bad:       []string{"x</think>\n\n\n<tool_call>", "x</think>Sure<tool_call>"}},
	{name: "qwen3_coder/named", format: chat.FormatQwen3Coder, names: []string{"search_docs"},
		text: "<tool_call>\n<function=search_docs>\n<parameter=query>\nline one\nline \"two\" <b> </tool_call>\n</parameter>\n<parameter=limit>\n5\n</parameter>\n<parameter=tags>\n[\"moe\"]\n</parameter>\n</function>\n</tool_call>",
		call: chat.ToolCall{ID: "call_0", Name: "search_docs", Arguments: `{"query":"line one\nline \"two\" <b> </tool_call>","limit":5,"tags":["moe"]}`},
		bad: []string{
			"<tool_call>\n<function=get_weather>",                                             // wrong name
			"I'll search.<tool_call>",                                                         // text before the call
			"<tool_call>\n<function=search_docs>\n<params>",                                   // not a parameter tag
			"<tool_call>\n<function=search_docs>\n<parameter=>",                               // empty parameter name
			"<tool_call>\n<function=search_docs>\n<parameter=a b>",                            // space in the name
			"<tool_call>\n<function=search_docs>\n<parameter=q>\nx<parameter=",                // a parameter inside a value
			"<tool_call>\n<function=search_docs>\n<parameter=q>\nx</function>",                // the function's end inside a value
			"<tool_call>\n<function=search_docs>\n</function>\n</tool_call><|im_end|>",        // trailing text
			"<tool_call>\n<function=search_docs>\n<parameter=q>\nx</parameter><parameter=",    // the newline is literal
			"<tool_call>\n<function=search_docs>\n<parameter=q>\nx</parameter>\n</tool_call>", // the function must close
		}},
	{name: "qwen3_coder/no_parameters", format: chat.FormatQwen3Coder, names: []string{"get_weather", "search_docs"},
		text: "<tool_call>\n<function=get_weather>\n</function>\n</tool_call>",
		call: chat.ToolCall{ID: "call_0", Name: "get_weather", Arguments: `{}`}},
	{name: "qwen3_coder/reasoning_open", format: chat.FormatQwen3Coder, names: []string{"get_weather"}, open: true,
		text:      "Think.</think>\n<tool_call>\n<function=get_weather>\n<parameter=location>\nRome\n</parameter>\n</function>\n</tool_call>",
		reasoning: "Think.",
		call:      chat.ToolCall{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Rome"}`}},
	{name: "harmony/named", format: chat.FormatHarmony, names: []string{"get_weather"},
		text: "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"location\": \"Paris <|en\", \"days\": 2}<|call|>", eosCloses: "<|call|>",
		call: chat.ToolCall{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Paris <|en","days":2}`},
		bad: []string{
			"<|channel|>analysis<|message|>",                 // no reasoning first
			"<|channel|>commentary to=functions.search_docs", // wrong name
			"Hi<|channel|>", // text before the call
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"a\": \"<|end|>",          // terminator in a string
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"a\" 1}",                  // malformed JSON
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{}<|end|>",                  // wrong terminator
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{}<|call|><|start|>",        // trailing text
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{} <|call|>",                // trailing space
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{}<|call|>x",                // trailing text
			"<|channel|>commentary to=functions.get_weather<|constrain|>json<|message|>{}<|call|>",                  // the space is literal
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>\"x\"<|call|>",              // not an object
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"a\": 1}}<|call|>",        // unbalanced
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"a\": [1, 2}<|call|>",     // unbalanced
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"a\": \"x\ny\"}<|call|>",  // raw newline in a string
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"a\": 01}<|call|>",        // bad number
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"a\": True}<|call|>",      // bad literal
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"a\": \"\\q\"}<|call|>",   // bad escape
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"a\": 1,}<|call|>",        // trailing comma
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"a\": \"<|start|>\"}",     // terminator in a string
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"a\": \"<|return|>\"}",    // terminator in a string
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"<|call|>\": 1}",          // terminator in a key
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{}<|call|><|return|>",       // trailing text
			"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"a\": 1}<|call|><|call|>", // trailing text
		}},
	{name: "harmony/required", format: chat.FormatHarmony, names: []string{"search_docs", "get_weather"},
		text: "<|channel|>commentary to=functions.search_docs <|constrain|>json<|message|>{}<|call|>", eosCloses: "<|call|>",
		call: chat.ToolCall{ID: "call_0", Name: "search_docs", Arguments: `{}`},
		bad:  []string{"<|channel|>commentary to=functions.get_time"}},
	{name: "gemma4/named", format: chat.FormatGemma4, names: []string{"search_docs"},
		text: "<|tool_call>call:search_docs{exact:false,filters:{since:<|\"|>2024-01-01<|\"|>,strict:true},limit:10,query:<|\"|>a, b: {c} \"q\" <tool_call|><|\"|>,ratio:0.5,tags:[<|\"|>x<|\"|>, <|\"|>y<|\"|>],<|\"|>my key<|\"|>: null}<tool_call|>",
		call: chat.ToolCall{ID: "call_0", Name: "search_docs",
			Arguments: `{"exact":false,"filters":{"since":"2024-01-01","strict":true},"limit":10,"query":"a, b: {c} \"q\" <tool_call|>","ratio":0.5,"tags":["x","y"],"my key":null}`},
		bad: []string{
			"<|tool_call>call:get_weather{",                      // wrong name
			"Ok<|tool_call>",                                     // text before the call
			"<|tool_call>call:search_docs{query:\"x\"",           // JSON quotes are not Gemma's
			"<|tool_call>call:search_docs{n:1e999}",              // an exponent the parser cannot read
			"<|tool_call>call:search_docs{query:<|\"|>x<turn|>",  // end-of-turn text in a string
			"<|tool_call>call:search_docs{query x",               // key without ':'
			"<|tool_call>call:search_docs{<|x",                   // not a quote
			"<|tool_call>call:search_docs{a:1,<|\"|>b<|\"|>:<|x", // not a quote
			"<|tool_call>call:search_docs{a:<|\"|>x<|\"|>y",      // text after a string
			"<|tool_call>call:search_docs{}<tool_call|><turn|>",  // trailing text
			"<|tool_call>call:search_docs{a:[1,]}",               // trailing comma
			"<|tool_call>call:search_docs{a:1}}",                 // unbalanced
			"<|tool_call>call:search_docs{a:tru}",                // bad literal
		}},
	{name: "gemma4/reasoning_open", format: chat.FormatGemma4, names: []string{"get_weather"}, open: true,
		text:      "\nThe user wants weather.<channel|><|tool_call>call:get_weather{location:<|\"|>Oslo<|\"|>}<tool_call|>",
		reasoning: "The user wants weather.",
		call:      chat.ToolCall{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Oslo"}`}},
	{name: "dsml/named", format: chat.FormatDeepSeekDSML, names: []string{"get_weather"},
		text: "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"location\" string=\"true\">Paris </｜DSML｜tool_calls></｜DSML｜parameter>\n<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n<｜DSML｜parameter name=\"unit\" string=\"false\">not json</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
		call: chat.ToolCall{ID: "call_0", Name: "get_weather", Arguments: `{"location":"Paris </｜DSML｜tool_calls>","days":3,"unit":"not json"}`},
		bad: []string{
			"<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"search_docs\"", // wrong name
			"Let me check.<｜DSML｜tool_calls>",                        // text before the call
			"<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"location\" string=\"maybe\"",      // string= is true or false
			"<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"\"",                               // empty parameter name
			"<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"a\" string=\"true\">x</｜DSML｜inv", // invoke close in a value
			"<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>\n",                   // trailing text
		}},
	{name: "dsml/reasoning_open", format: chat.FormatDeepSeekDSML, names: []string{"get_weather"}, open: true,
		text:      "Need it.</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
		reasoning: "Need it.",
		call:      chat.ToolCall{ID: "call_0", Name: "get_weather", Arguments: `{}`}},
}

// splits returns ways to cut text into tokens: whole, bytes, runes, and
// random cuts.
func splits(text string, seed uint64) [][]string {
	out := [][]string{{text}}
	var bytes, runes []string
	for i := range len(text) {
		bytes = append(bytes, text[i:i+1])
	}
	for _, r := range text {
		runes = append(runes, string(r))
	}
	out = append(out, bytes, runes)
	rng := rand.New(rand.NewPCG(seed, 2))
	for range 20 {
		var cut []string
		for rest := text; rest != ""; {
			n := min(len(rest), 1+rng.IntN(8))
			cut = append(cut, rest[:n])
			rest = rest[n:]
		}
		out = append(out, cut)
	}
	return out
}

func parseAll(t *testing.T, s forcedSample, chunks []string) (content, reasoning string, calls []chat.ToolCall) {
	t.Helper()
	p := newTestParser(parserSample{format: s.format, open: s.open})
	var evs []chat.Event
	for _, c := range chunks {
		evs = append(evs, p.Feed(c)...)
	}
	return chat.Collect(append(evs, p.Finish()...))
}

// The exact forced text, in any tokenization, follows the grammar to its
// end, and the family's parser turns it into the call.
func TestForcedCallAccepts(t *testing.T) {
	for i, s := range forcedSamples {
		t.Run(s.name, func(t *testing.T) {
			g, err := chat.ForceToolCall(s.format, s.names, s.open)
			require.NoError(t, err)
			for _, chunks := range splits(s.text, uint64(i)) {
				m := g.Start()
				for j, c := range chunks {
					require.False(t, m.Done(), "complete before chunk %d", j)
					require.True(t, m.Allows(c), "chunk %d %q of %q refused", j, c, chunks)
					require.True(t, m.Feed(c))
				}
				require.True(t, m.Done(), "complete after the whole text")
				require.False(t, m.Allows(" "), "nothing follows")
				content, reasoning, calls := parseAll(t, s, chunks)
				require.Empty(t, content)
				require.Equal(t, s.reasoning, reasoning)
				require.Equal(t, []chat.ToolCall{s.call}, calls)
				require.True(t, json.Valid([]byte(calls[0].Arguments)))
			}
			if s.eosCloses != "" {
				// The end-of-sequence token may stand for the closing literal.
				head := strings.TrimSuffix(s.text, s.eosCloses)
				m := g.Start()
				require.True(t, m.Feed(head))
				require.False(t, m.Done())
				require.True(t, m.Completes(s.eosCloses))
				require.False(t, m.Done(), "Completes leaves the matcher unchanged")
				_, _, calls := parseAll(t, s, []string{head})
				require.Equal(t, []chat.ToolCall{s.call}, calls)
			}
		})
	}
}

// Text that deviates from the forced call is refused at the byte where
// it deviates, and never before.
func TestForcedCallRefuses(t *testing.T) {
	for _, s := range forcedSamples {
		t.Run(s.name, func(t *testing.T) {
			g, err := chat.ForceToolCall(s.format, s.names, s.open)
			require.NoError(t, err)
			for _, bad := range s.bad {
				require.False(t, g.Start().Allows(bad), "%q allowed", bad)
				// Byte by byte: some proper prefix is fine, then a byte is refused.
				m := g.Start()
				refused := -1
				for i := range len(bad) {
					if !m.Feed(bad[i : i+1]) {
						refused = i
						break
					}
				}
				require.GreaterOrEqual(t, refused, 0, "%q allowed byte by byte", bad)
			}
		})
	}
}

func TestForceToolCallErrors(t *testing.T) {
	for _, c := range []struct {
		format chat.Format
		names  []string
		noFmt  bool
	}{
		{chat.FormatPlain, []string{"f"}, true},
		{chat.Format("unknown"), []string{"f"}, true},
		{chat.FormatQwen3, nil, false},
		{chat.FormatQwen3, []string{""}, false},
		{chat.FormatQwen3, []string{" f"}, false},
		{chat.FormatHarmony, []string{"a b"}, false},
		{chat.FormatQwen3Coder, []string{"a>b"}, false},
		{chat.FormatGemma4, []string{"a{"}, false},
		{chat.FormatDeepSeekDSML, []string{`a"b`}, false},
	} {
		_, err := chat.ForceToolCall(c.format, c.names, false)
		require.Error(t, err, "%s %q", c.format, c.names)
		require.Equal(t, c.noFmt, err != nil && strings.Contains(err.Error(), chat.ErrNoToolFormat.Error()), "%s: %v", c.format, err)
	}
}

// Random walks over a vocabulary of pieces, each step picking uniformly
// among the pieces the grammar allows: the grammar has no dead ends (some
// piece is always allowed until the call is complete), and every
// completed walk parses into exactly one call of a forced name with JSON
// object arguments.
func TestForcedCallRandomWalks(t *testing.T) {
	var ascii []string
	for c := byte(' '); c <= '~'; c++ {
		ascii = append(ascii, string(c))
	}
	ascii = append(ascii, "\n", "é", "｜", "<|", "|>", "true", "12", "\"a\"", ": ", ", ")
	markers := map[chat.Format][]string{
		chat.FormatQwen3:        {"<tool_call>", "</tool_call>", "<|im_end|>", "<think>", "</think>", "get_weather", "search_docs", "\"arguments\": "},
		chat.FormatQwen3Coder:   {"<tool_call>", "</tool_call>", "<function=", "</function>", "<parameter=", "</parameter>", "<|im_end|>", "</think>", "get_weather", "search_docs", "location"},
		chat.FormatHarmony:      {"<|channel|>", "<|message|>", "<|constrain|>", "<|call|>", "<|end|>", "<|start|>", "commentary", " to=functions.", "json", "get_weather", "search_docs"},
		chat.FormatGemma4:       {"<|tool_call>", "<tool_call|>", "<|\"|>", "call:", "<turn|>", "<channel|>", "get_weather", "search_docs", "location"},
		chat.FormatDeepSeekDSML: {"<｜DSML｜tool_calls>", "</｜DSML｜tool_calls>", "<｜DSML｜invoke name=\"", "</｜DSML｜invoke>", "<｜DSML｜parameter name=\"", "</｜DSML｜parameter>", " string=\"true\">", " string=\"false\">", "</think>", "get_weather", "search_docs"},
	}
	for _, format := range []chat.Format{chat.FormatQwen3, chat.FormatQwen3Coder, chat.FormatHarmony, chat.FormatGemma4, chat.FormatDeepSeekDSML} {
		for _, open := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/open=%v", format, open), func(t *testing.T) {
				vocab := append(append([]string{}, ascii...), markers[format]...)
				names := []string{"get_weather", "search_docs"}
				g, err := chat.ForceToolCall(format, names, open)
				require.NoError(t, err)
				completed := 0
				for seed := range uint64(100) {
					rng := rand.New(rand.NewPCG(seed, 3))
					m := g.Start()
					var chunks []string
					for range 600 {
						var allowed []string
						for _, p := range vocab {
							if m.Allows(p) {
								allowed = append(allowed, p)
							}
						}
						require.NotEmpty(t, allowed, "dead end after %q", strings.Join(chunks, ""))
						// Prefer markers so that walks finish.
						var marked []string
						for _, p := range allowed {
							if utf8.RuneCountInString(p) > 2 {
								marked = append(marked, p)
							}
						}
						pick := allowed[rng.IntN(len(allowed))]
						if len(marked) > 0 && rng.IntN(4) == 0 {
							pick = marked[rng.IntN(len(marked))]
						}
						require.True(t, m.Feed(pick))
						chunks = append(chunks, pick)
						if m.Done() {
							break
						}
					}
					if !m.Done() {
						continue
					}
					completed++
					text := strings.Join(chunks, "")
					content, _, calls := parseAll(t, forcedSample{format: format, open: open}, chunks)
					require.Empty(t, content, "%q", text)
					require.Len(t, calls, 1, "%q", text)
					require.Contains(t, names, calls[0].Name)
					require.True(t, json.Valid([]byte(calls[0].Arguments)), "%q → %q", text, calls[0].Arguments)
					require.Equal(t, byte('{'), calls[0].Arguments[0])
				}
				t.Logf("%s open=%v: %d of 100 walks completed", format, open, completed)
				require.Greater(t, completed, 10)
			})
		}
	}
}
