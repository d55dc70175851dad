package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/server/servertest"
	"github.com/stretchr/testify/require"
)

var searchTool = map[string]any{"type": "function", "function": map[string]any{
	"name": "search_docs", "description": "Search the docs",
	"parameters": map[string]any{"type": "object", "properties": map[string]any{"query": map[string]any{"type": "string"}}},
}}

func named(name string) map[string]any {
	return map[string]any{"type": "function", "function": map[string]any{"name": name}}
}

// forcedResult is what one chat response holds, streamed or not.
type forcedResult struct {
	finish    string
	content   string
	name      string
	arguments string
	calls     int
}

// chatResult runs body streamed or not and folds the answer.
func (h *harness) chatResult(body map[string]any, stream bool) forcedResult {
	t := h.t
	t.Helper()
	var r forcedResult
	if !stream {
		status, resp, _ := h.post("/v1/chat/completions", body)
		require.Equal(t, http.StatusOK, status, resp)
		msg := message(resp)
		r.finish = choice(resp)["finish_reason"].(string)
		if c, ok := msg["content"].(string); ok {
			r.content = c
		}
		if calls, ok := msg["tool_calls"].([]any); ok {
			r.calls = len(calls)
			fn := calls[0].(map[string]any)["function"].(map[string]any)
			r.name, r.arguments = fn["name"].(string), fn["arguments"].(string)
		}
		return r
	}
	body["stream"] = true
	status, events, done := h.stream(t.Context(), "/v1/chat/completions", body)
	require.Equal(t, http.StatusOK, status)
	require.True(t, done)
	ids := map[string]bool{}
	for _, ev := range events {
		c := ev["choices"].([]any)[0].(map[string]any)
		d := c["delta"].(map[string]any)
		if s, ok := d["content"].(string); ok {
			r.content += s
		}
		for _, tc := range asSlice(d["tool_calls"]) {
			tc := tc.(map[string]any)
			require.Equal(t, 0.0, tc["index"], "one call")
			if id, ok := tc["id"].(string); ok {
				ids[id] = true
			}
			fn := tc["function"].(map[string]any)
			if n, ok := fn["name"].(string); ok {
				r.name += n
			}
			if a, ok := fn["arguments"].(string); ok {
				r.arguments += a
			}
		}
		if f, ok := c["finish_reason"].(string); ok {
			r.finish = f
		}
	}
	r.calls = len(ids)
	return r
}

// tool_choice required and named on random fixture models: constrained
// greedy decoding writes the call in the model's syntax (Qwen3 JSON,
// harmony), which parses into a call of the forced name with JSON object
// arguments, streamed or not; when max_tokens cuts it, finish_reason is
// length and the partial text stays content.
func TestForcedToolChoice(t *testing.T) {
	tools := []any{weatherTool, searchTool}
	tests := []struct {
		fixture   string
		choice    any
		maxTokens int
		finish    string
		name      string
		arguments string // exact, when the random model's choice is stable; else any JSON object
		prefix    string // content when cut
	}{
		// The tiny test tokenizer spells the markers byte by byte, and the
		// random Qwen3 model fills a long string key: 256 tokens end it
		// after search_docs; after get_weather the random model never
		// closes its string (not within 400 tokens either).
		{fixture: "qwen3_moe", choice: "required", maxTokens: 256, finish: "tool_calls", name: "search_docs"},
		{fixture: "qwen3_moe", choice: named("search_docs"), maxTokens: 256, finish: "tool_calls", name: "search_docs"},
		{fixture: "qwen3_moe", choice: named("get_weather"), maxTokens: 256, finish: "length", prefix: "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {"},
		{fixture: "qwen3_moe", choice: named("search_docs"), maxTokens: 64, finish: "length", prefix: "<tool_call>\n{\"name\": \"search_docs\", \"arguments\": {"},
		{fixture: "gpt_oss", choice: "required", maxTokens: 128, finish: "tool_calls", name: "get_weather", arguments: "{}"},
		{fixture: "gpt_oss", choice: named("search_docs"), maxTokens: 128, finish: "tool_calls", name: "search_docs", arguments: "{}"},
		{fixture: "gpt_oss", choice: named("get_weather"), maxTokens: 40, finish: "length", prefix: "<|channel|>commentary to=functions.get_weather "},
	}
	harnesses := map[string]*harness{}
	for _, tc := range tests {
		h := harnesses[tc.fixture]
		if h == nil {
			h = newHarness(t, setup{fixture: tc.fixture})
			harnesses[tc.fixture] = h
		}
		var results []forcedResult
		for _, stream := range []bool{false, true} {
			r := h.chatResult(map[string]any{"messages": []any{user("Weather in Paris?")}, "tools": tools,
				"tool_choice": tc.choice, "max_tokens": tc.maxTokens, "temperature": 0}, stream)
			t.Logf("%s %v stream=%v: %+v", tc.fixture, tc.choice, stream, r)
			require.Equal(t, tc.finish, r.finish)
			if tc.finish == "length" {
				require.Zero(t, r.calls)
				require.True(t, strings.HasPrefix(r.content, tc.prefix), "%q", r.content)
			} else {
				require.Equal(t, 1, r.calls)
				require.Empty(t, r.content)
				require.Equal(t, tc.name, r.name)
				var args map[string]any
				require.NoError(t, json.Unmarshal([]byte(r.arguments), &args), "arguments %q", r.arguments)
				if tc.arguments != "" {
					require.Equal(t, tc.arguments, r.arguments)
				}
			}
			results = append(results, r)
		}
		require.Equal(t, results[0], results[1], "streaming gives the same answer")
	}
}

// The scripted model writes its get_weather call under a named choice;
// a model whose template has no tool-call syntax refuses forced calls.
func TestForcedToolChoiceScriptedAndPlain(t *testing.T) {
	h := newHarness(t, setup{})
	for _, stream := range []bool{false, true} {
		r := h.chatResult(map[string]any{"messages": []any{user("Weather in Paris?")}, "tools": []any{weatherTool, searchTool},
			"tool_choice": named(servertest.ToolName)}, stream)
		require.Equal(t, forcedResult{finish: "tool_calls", name: servertest.ToolName, arguments: `{"city":"Paris"}`, calls: 1}, r)
	}

	p := newHarness(t, setup{plain: true})
	for _, choice := range []any{"required", named("get_weather")} {
		status, resp, _ := p.post("/v1/chat/completions", map[string]any{"messages": []any{user("x")}, "tools": []any{weatherTool}, "tool_choice": choice})
		require.Equal(t, http.StatusBadRequest, status, resp)
		e := resp["error"].(map[string]any)
		require.Equal(t, "not_supported", e["code"])
		require.Equal(t, "tool_choice", e["param"])
		require.Contains(t, e["message"], "no tool-call format")
	}
	// auto still works there (as plain text).
	status, resp, _ := p.post("/v1/chat/completions", map[string]any{"messages": []any{user("x")}, "tools": []any{weatherTool}})
	require.Equal(t, http.StatusOK, status, resp)
}
