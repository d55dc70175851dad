package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/capability"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/engine/enginetest"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/archs"
	"github.com/maniac-ai/mach/pkg/preflight"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/scheduler"
	"github.com/maniac-ai/mach/pkg/server"
	"github.com/maniac-ai/mach/pkg/server/servertest"
	"github.com/stretchr/testify/require"
)

// gated blocks every forward step until the test sends on gate.
type gated struct {
	model.Model
	gate chan struct{}
}

func (g gated) Forward(ctx context.Context, b *model.Batch) (*model.Output, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Model.Forward(ctx, b)
}

type setup struct {
	sched   scheduler.Options
	server  server.Options
	gate    chan struct{}
	fixture string // an engine fixture instead of the scripted model
	noEOS   bool   // generate to max_tokens: no end-of-sequence ids
	plain   bool   // hide the model type: the output format falls back to the template's (plain for ChatML)
}

var quiet = slog.New(slog.DiscardHandler)

type harness struct {
	t     *testing.T
	e     *engine.Engine
	sched *scheduler.Scheduler
	srv   *server.Server
	ts    *httptest.Server
}

func scripted(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, servertest.Write(dir))
	return dir
}

func newHarness(t *testing.T, s setup) *harness {
	t.Helper()
	dir := ""
	if s.fixture != "" {
		dir = enginetest.Checkpoint(t, s.fixture, nil)
	} else {
		dir = scripted(t)
	}
	e, err := engine.Load(t.Context(), dir, engine.Options{Loaders: archs.Loaders(), CacheType: kernels.F32})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	var m model.Model = e.Model()
	if s.gate != nil {
		m = gated{m, s.gate}
	}
	if s.server.Logger == nil {
		s.server.Logger = quiet
	}
	s.sched.Logger = quiet
	s.sched.EOS = e.EOS()
	if s.noEOS {
		s.sched.EOS = nil
	}
	metrics := server.NewMetrics()
	s.sched.Observer = metrics
	s.sched.CacheType = kernels.F32
	if s.sched.PrefixBlock == 0 {
		s.sched.PrefixBlock = 4
	}
	sched, err := scheduler.New(m, s.sched)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- sched.Run(ctx) }()
	reg := registry.Default()
	b := preflight.ThisBuild(reg)
	arch, _ := reg.Lookup(e.Config.ModelType)
	paths := b.Paths(arch, nil)
	if s.plain {
		arch.ModelType = ""
	}
	srv := server.New(server.Model{
		Name: "scripted", Aliases: []string{dir}, Dir: dir, Arch: arch, Paths: paths,
		Active:   map[capability.Path]bool{capability.OpenAIHTTP: true, capability.ContinuousBatching: true},
		Prompter: e.Prompter, NewDecoder: e.NewDecoder, Created: time.Unix(1700000000, 0),
	}, sched, metrics, s.server)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.Close()
		cancel()
		<-ran
	})
	return &harness{t: t, e: e, sched: sched, srv: srv, ts: ts}
}

// post sends body as JSON and returns the status and decoded response.
func (h *harness) post(path string, body any, header ...string) (int, map[string]any, http.Header) {
	h.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case string:
		r = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(h.t, err)
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(http.MethodPost, h.ts.URL+path, r)
	require.NoError(h.t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	var out map[string]any
	raw, err := io.ReadAll(resp.Body)
	require.NoError(h.t, err)
	require.NoError(h.t, json.Unmarshal(raw, &out), "%s", raw)
	return resp.StatusCode, out, resp.Header
}

func (h *harness) get(path string, header ...string) (int, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.ts.URL+path, nil)
	require.NoError(h.t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(h.t, err)
	return resp.StatusCode, raw
}

// status posts body and returns the status once the response is read
// (-1 on a transport error); safe on any goroutine.
func (h *harness) status(ctx context.Context, path, body string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.ts.URL+path, strings.NewReader(body))
	if err != nil {
		return -1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return -1
	}
	return resp.StatusCode
}

// stream posts a streaming request and returns the decoded data events
// (without [DONE]) and whether [DONE] came last.
func (h *harness) stream(ctx context.Context, path string, body any) (int, []map[string]any, bool) {
	h.t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(h.t, err)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.ts.URL+path, bytes.NewReader(raw))
	require.NoError(h.t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, false
	}
	require.Equal(h.t, "text/event-stream", resp.Header.Get("Content-Type"))
	var events []map[string]any
	done := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		require.True(h.t, strings.HasPrefix(line, "data: "), line)
		require.False(h.t, done, "nothing after [DONE]")
		data := strings.TrimPrefix(line, "data: ")
		if data == "[DONE]" {
			done = true
			continue
		}
		var ev map[string]any
		require.NoError(h.t, json.Unmarshal([]byte(data), &ev))
		events = append(events, ev)
	}
	return resp.StatusCode, events, done
}

// recv receives from ch, failing the test (instead of hanging it) when
// nothing comes within 30 seconds.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: nothing after 30 s", what)
		var zero T
		return zero
	}
}

func user(text string) map[string]any { return map[string]any{"role": "user", "content": text} }

var weatherTool = map[string]any{"type": "function", "function": map[string]any{
	"name": "get_weather", "description": "Current weather",
	"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}},
}}

func message(resp map[string]any) map[string]any {
	return resp["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
}

func choice(resp map[string]any) map[string]any {
	return resp["choices"].([]any)[0].(map[string]any)
}

func TestChatReasoningAndContent(t *testing.T) {
	h := newHarness(t, setup{})
	status, resp, _ := h.post("/v1/chat/completions", map[string]any{"model": "scripted", "messages": []any{user("Hi")}})
	require.Equal(t, http.StatusOK, status, resp)
	require.Equal(t, "chat.completion", resp["object"])
	require.Equal(t, "scripted", resp["model"])
	require.True(t, strings.HasPrefix(resp["id"].(string), "chatcmpl-"))
	msg := message(resp)
	require.Equal(t, "assistant", msg["role"])
	require.Equal(t, servertest.Greeting, msg["content"])
	require.Equal(t, servertest.Reasoning, strings.TrimSpace(msg["reasoning_content"].(string)))
	require.Equal(t, "stop", choice(resp)["finish_reason"])
	u := resp["usage"].(map[string]any)
	require.Equal(t, 4.0, u["completion_tokens"])
	require.Equal(t, u["prompt_tokens"].(float64)+4, u["total_tokens"])
	require.Equal(t, 0.0, u["prompt_tokens_details"].(map[string]any)["cached_tokens"])
}

// A tool call is parsed into tool_calls; the conversation with the call
// and its result goes back in and gets the answer.
func TestChatToolCallRoundTrip(t *testing.T) {
	h := newHarness(t, setup{})
	status, resp, _ := h.post("/v1/chat/completions", map[string]any{"messages": []any{user("Weather in Paris?")}, "tools": []any{weatherTool}})
	require.Equal(t, http.StatusOK, status, resp)
	msg := message(resp)
	require.Nil(t, msg["content"], "content is null next to tool calls")
	calls := msg["tool_calls"].([]any)
	require.Len(t, calls, 1)
	call := calls[0].(map[string]any)
	require.Equal(t, "function", call["type"])
	require.True(t, strings.HasPrefix(call["id"].(string), "call_"))
	fn := call["function"].(map[string]any)
	require.Equal(t, servertest.ToolName, fn["name"])
	require.JSONEq(t, servertest.ToolArguments, fn["arguments"].(string))
	require.Equal(t, "tool_calls", choice(resp)["finish_reason"])

	status, resp, _ = h.post("/v1/chat/completions", map[string]any{"tools": []any{weatherTool}, "messages": []any{
		user("Weather in Paris?"),
		map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{call}},
		map[string]any{"role": "tool", "tool_call_id": call["id"], "content": `{"sky": "sunny"}`},
	}})
	require.Equal(t, http.StatusOK, status, resp)
	require.Equal(t, servertest.Answer, message(resp)["content"])
	require.Equal(t, "stop", choice(resp)["finish_reason"])

	// tool_choice none: the model is not told about the tools.
	status, resp, _ = h.post("/v1/chat/completions", map[string]any{"messages": []any{user("Weather?")}, "tools": []any{weatherTool}, "tool_choice": "none"})
	require.Equal(t, http.StatusOK, status, resp)
	require.Equal(t, servertest.Greeting, message(resp)["content"])
	require.Nil(t, message(resp)["tool_calls"])
}

func TestChatStreaming(t *testing.T) {
	h := newHarness(t, setup{})
	status, events, done := h.stream(t.Context(), "/v1/chat/completions", map[string]any{
		"messages": []any{user("Weather?")}, "tools": []any{weatherTool}, "stream": true,
		"stream_options": map[string]any{"include_usage": true},
	})
	require.Equal(t, http.StatusOK, status)
	require.True(t, done, "the stream ends with [DONE]")
	require.GreaterOrEqual(t, len(events), 4)
	id := events[0]["id"]
	var name, args string
	var callID string
	var finish []string
	for i, ev := range events {
		require.Equal(t, "chat.completion.chunk", ev["object"])
		require.Equal(t, id, ev["id"], "one id for the stream")
		choices := ev["choices"].([]any)
		if i == len(events)-1 {
			require.Empty(t, choices, "the usage chunk has no choices")
			u := ev["usage"].(map[string]any)
			require.Equal(t, 3.0, u["completion_tokens"])
			continue
		}
		c := choices[0].(map[string]any)
		d := c["delta"].(map[string]any)
		if i == 0 {
			require.Equal(t, "assistant", d["role"])
		}
		if f, ok := c["finish_reason"].(string); ok {
			finish = append(finish, f)
		}
		for _, tc := range asSlice(d["tool_calls"]) {
			call := tc.(map[string]any)
			require.Equal(t, 0.0, call["index"])
			if id, ok := call["id"].(string); ok {
				callID = id
			}
			fn := call["function"].(map[string]any)
			if n, ok := fn["name"].(string); ok {
				name += n
			}
			args += fn["arguments"].(string)
		}
	}
	require.Equal(t, []string{"tool_calls"}, finish)
	require.NotEmpty(t, callID)
	require.Equal(t, servertest.ToolName, name)
	require.JSONEq(t, servertest.ToolArguments, args)

	// Reasoning and content deltas.
	status, events, done = h.stream(t.Context(), "/v1/chat/completions", map[string]any{"messages": []any{user("Hi")}, "stream": true})
	require.Equal(t, http.StatusOK, status)
	require.True(t, done)
	var content, reasoning string
	for _, ev := range events {
		require.Nil(t, ev["usage"], "no usage chunk unless asked")
		d := ev["choices"].([]any)[0].(map[string]any)["delta"].(map[string]any)
		if s, ok := d["content"].(string); ok {
			content += s
		}
		if s, ok := d["reasoning_content"].(string); ok {
			reasoning += s
		}
	}
	require.Equal(t, servertest.Greeting, content)
	require.Equal(t, servertest.Reasoning, strings.TrimSpace(reasoning))
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func TestLogprobs(t *testing.T) {
	h := newHarness(t, setup{})
	status, resp, _ := h.post("/v1/chat/completions", map[string]any{"messages": []any{user("Hi")}, "logprobs": true, "top_logprobs": 3})
	require.Equal(t, http.StatusOK, status, resp)
	content := choice(resp)["logprobs"].(map[string]any)["content"].([]any)
	require.Len(t, content, 4)
	first := content[0].(map[string]any)
	require.Equal(t, "<think>\n", first["token"])
	require.InDelta(t, 0, first["logprob"], 0.01, "the script is near certain")
	require.Len(t, first["top_logprobs"], 3)
	require.Equal(t, first["token"], first["top_logprobs"].([]any)[0].(map[string]any)["token"])
	require.Len(t, first["bytes"], len("<think>\n"))

	status, resp, _ = h.post("/v1/completions", map[string]any{"prompt": "<|gen_answer|>", "logprobs": 2, "max_tokens": 5})
	require.Equal(t, http.StatusOK, status, resp)
	c := choice(resp)
	require.Equal(t, servertest.Answer, c["text"])
	lp := c["logprobs"].(map[string]any)
	require.Equal(t, []any{"It is sunny", " in Paris."}, lp["tokens"])
	require.Equal(t, []any{0.0, float64(len("It is sunny"))}, lp["text_offset"])
	require.Len(t, lp["top_logprobs"].([]any)[0], 2)
}

func TestCompletions(t *testing.T) {
	h := newHarness(t, setup{})
	status, resp, _ := h.post("/v1/completions", map[string]any{"prompt": "<|gen_chat|>", "max_tokens": 2, "echo": true})
	require.Equal(t, http.StatusOK, status, resp)
	require.Equal(t, "text_completion", resp["object"])
	require.Equal(t, "<|gen_chat|><think>\n"+servertest.Reasoning, choice(resp)["text"])
	require.Equal(t, "length", choice(resp)["finish_reason"])
	// Token ids, a stop string, streaming.
	ids := h.e.Prompter
	prompt, err := ids.Prompt(&engine.Request{Prompt: "<|gen_answer|>"})
	require.NoError(t, err)
	status, events, done := h.stream(t.Context(), "/v1/completions", map[string]any{"prompt": prompt, "stream": true, "stop": []string{" in"}})
	require.Equal(t, http.StatusOK, status)
	require.True(t, done)
	var text string
	for _, ev := range events {
		text += ev["choices"].([]any)[0].(map[string]any)["text"].(string)
	}
	require.Equal(t, "It is sunny", text)
	last := events[len(events)-1]["choices"].([]any)[0].(map[string]any)
	require.Equal(t, "stop", last["finish_reason"])
}

func TestErrors(t *testing.T) {
	h := newHarness(t, setup{server: server.Options{MaxBodyBytes: 4096}})
	msgs := []any{user("Hi")}
	tests := []struct {
		name   string
		path   string
		body   any
		status int
		param  any
		code   any
	}{
		{"invalid JSON", "/v1/chat/completions", `{"messages": [`, 400, nil, nil},
		{"wrong type", "/v1/chat/completions", `{"messages": "hi"}`, 400, "messages", nil},
		{"no messages", "/v1/chat/completions", map[string]any{}, 400, "messages", nil},
		{"bad role", "/v1/chat/completions", map[string]any{"messages": []any{map[string]any{"role": "robot", "content": "x"}}}, 400, "messages[0].role", nil},
		{"image part", "/v1/chat/completions", map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "image_url"}}}}}, 400, "messages[0].content[0].type", "not_supported"},
		{"tool without id", "/v1/chat/completions", map[string]any{"messages": []any{map[string]any{"role": "tool", "content": "x"}}}, 400, "messages[0].tool_call_id", nil},
		{"temperature", "/v1/chat/completions", map[string]any{"messages": msgs, "temperature": 3}, 400, "temperature", nil},
		{"top_logprobs without logprobs", "/v1/chat/completions", map[string]any{"messages": msgs, "top_logprobs": 2}, 400, "top_logprobs", nil},
		{"n", "/v1/chat/completions", map[string]any{"messages": msgs, "n": 2}, 400, "n", "not_supported"},
		{"logit_bias", "/v1/chat/completions", map[string]any{"messages": msgs, "logit_bias": map[string]any{"5": 10}}, 400, "logit_bias", "not_supported"},
		{"legacy functions", "/v1/chat/completions", map[string]any{"messages": msgs, "functions": []any{map[string]any{"name": "f"}}}, 400, "functions", "not_supported"},
		{"max_tokens", "/v1/chat/completions", map[string]any{"messages": msgs, "max_tokens": 0}, 400, "max_tokens", nil},
		{"too long", "/v1/chat/completions", map[string]any{"messages": msgs, "max_tokens": 5000}, 400, "messages", "context_length_exceeded"},
		{"stop", "/v1/chat/completions", map[string]any{"messages": msgs, "stop": []string{"a", "b", "c", "d", "e"}}, 400, "stop", nil},
		{"json_schema", "/v1/chat/completions", map[string]any{"messages": msgs, "response_format": map[string]any{"type": "json_schema"}}, 400, "response_format", "not_supported"},
		{"response_format type", "/v1/chat/completions", map[string]any{"messages": msgs, "response_format": map[string]any{"type": "yaml"}}, 400, "response_format", nil},
		{"tool_choice required without tools", "/v1/chat/completions", map[string]any{"messages": msgs, "tool_choice": "required"}, 400, "tool_choice", nil},
		{"tool_choice with json mode", "/v1/chat/completions", map[string]any{"messages": msgs, "tools": []any{weatherTool}, "tool_choice": "required", "response_format": map[string]any{"type": "json_object"}}, 400, "tool_choice", nil},
		{"tool_choice unknown name", "/v1/chat/completions", map[string]any{"messages": msgs, "tools": []any{weatherTool}, "tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "nope"}}}, 400, "tool_choice", nil},
		{"bad tool", "/v1/chat/completions", map[string]any{"messages": msgs, "tools": []any{map[string]any{"type": "function"}}}, 400, "tools[0].function.name", nil},
		{"unknown model", "/v1/chat/completions", map[string]any{"model": "gpt-4o", "messages": msgs}, 404, "model", "model_not_found"},
		{"too large", "/v1/chat/completions", map[string]any{"messages": []any{user(strings.Repeat("x", 5000))}}, 413, nil, "request_too_large"},
		{"prompt missing", "/v1/completions", map[string]any{}, 400, "prompt", nil},
		{"two prompts", "/v1/completions", map[string]any{"prompt": []string{"a", "b"}}, 400, "prompt", "not_supported"},
		{"suffix", "/v1/completions", map[string]any{"prompt": "a", "suffix": "b"}, 400, "suffix", "not_supported"},
		{"token out of range", "/v1/completions", map[string]any{"prompt": []int{1, 99999}}, 400, "prompt", nil},
		{"unknown route", "/v1/embeddings", map[string]any{}, 404, nil, "unknown_url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, resp, _ := h.post(tc.path, tc.body)
			require.Equal(t, tc.status, status, resp)
			e := resp["error"].(map[string]any)
			require.NotEmpty(t, e["message"])
			require.NotEmpty(t, e["type"])
			require.Equal(t, tc.param, e["param"])
			if tc.code != nil {
				require.Equal(t, tc.code, e["code"])
			}
		})
	}
	// Unknown fields are ignored, as OpenAI does.
	status, resp, _ := h.post("/v1/chat/completions", map[string]any{"messages": msgs, "frobnicate": true, "service_tier": "auto"})
	require.Equal(t, http.StatusOK, status, resp)
}

// A value of the wrong JSON type is a 400 naming its JSON path (no Go
// struct names) and the types in JSON's words.
func TestTypeErrors(t *testing.T) {
	h := newHarness(t, setup{})
	vocab := h.sched.Vocab()
	tests := []struct {
		path, body string
		param      any
		message    string
	}{
		{"/v1/chat/completions", `{"temperature":"hot"}`, "temperature", "temperature must be a number, got a string"},
		{"/v1/chat/completions", `{"seed":"x"}`, "seed", "seed must be an integer, got a string"},
		{"/v1/chat/completions", `{"seed":1.5}`, "seed", "seed must be an integer in range, got 1.5"},
		{"/v1/chat/completions", `{"top_p":1e999}`, "top_p", "top_p 1e999 is out of range"},
		{"/v1/chat/completions", `{"messages":"hi"}`, "messages", "messages must be an array, got a string"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"},7]}`, "messages[1]", "messages[1] must be an object, got a number"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"},{"role":["tool"]}]}`, "messages[1].role", "messages[1].role must be a string, got an array"},
		{"/v1/chat/completions", `{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":3}}]}]}`, "messages[0].tool_calls[0].function.name", "messages[0].tool_calls[0].function.name must be a string, got a number"},
		{"/v1/chat/completions", `{"stream":"yes"}`, "stream", "stream must be a boolean, got a string"},
		{"/v1/chat/completions", `{"stream_options":{"include_usage":1}}`, "stream_options.include_usage", "stream_options.include_usage must be a boolean, got a number"},
		{"/v1/chat/completions", `{"response_format":"json"}`, "response_format", "response_format must be an object, got a string"},
		{"/v1/chat/completions", `[]`, nil, "the request body must be a JSON object, got an array"},
		{"/v1/chat/completions", ` "hi"`, nil, "the request body must be a JSON object, got a string"},
		{"/v1/completions", `{"prompt":"a","max_tokens":"3"}`, "max_tokens", "max_tokens must be an integer, got a string"},
		{"/v1/completions", `{"prompt":"a","temperature":true}`, "temperature", "temperature must be a number, got a boolean"},
		{"/v1/completions", `7`, nil, "the request body must be a JSON object, got a number"},
		{"/v1/completions", `{"prompt":[1,2,999999]}`, "prompt", fmt.Sprintf("prompt token 999999 (position 2) is outside the model's vocabulary: token ids are 0 to %d (vocab_size %d)", vocab-1, vocab)},
		{"/v1/completions", `{"prompt":[[1,2,999999]]}`, "prompt", "prompt token 999999 (position 2) is outside the model's vocabulary"},
		{"/v1/completions", `{"prompt":[1,-2]}`, "prompt", "prompt token -2 (position 1) is not a token id"},
		{"/v1/completions", `{"prompt":[1,1e10]}`, "prompt", "prompt token 1e+10 (position 1) is not a token id"},
		{"/v1/completions", `{"prompt":[1,2.5]}`, "prompt", "prompt token 2.5 (position 1) is not a token id"},
	}
	for _, tc := range tests {
		t.Run(tc.body, func(t *testing.T) {
			status, resp, _ := h.post(tc.path, tc.body)
			require.Equal(t, http.StatusBadRequest, status, resp)
			e := resp["error"].(map[string]any)
			require.Equal(t, "invalid_request_error", e["type"])
			require.Equal(t, tc.param, e["param"])
			msg, _ := e["message"].(string)
			require.True(t, strings.HasPrefix(msg, tc.message), "message %q, want it to start with %q", msg, tc.message)
			for _, leak := range []string{"samplingFields", "server.", "float64", "int64", "int32", "Go "} {
				require.NotContains(t, msg, leak)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	h := newHarness(t, setup{server: server.Options{APIKey: "s3cret"}})
	for _, path := range []string{"/v1/models", "/v1/capabilities"} {
		status, body := h.get(path)
		require.Equal(t, http.StatusUnauthorized, status, path)
		require.Contains(t, string(body), "invalid_api_key")
		status, _ = h.get(path, "Authorization", "Bearer wrong")
		require.Equal(t, http.StatusUnauthorized, status)
		status, _ = h.get(path, "Authorization", "Bearer s3cret")
		require.Equal(t, http.StatusOK, status)
	}
	status, _, _ := h.post("/v1/chat/completions", map[string]any{"messages": []any{user("Hi")}})
	require.Equal(t, http.StatusUnauthorized, status)
	status, _, _ = h.post("/v1/chat/completions", map[string]any{"messages": []any{user("Hi")}}, "Authorization", "Bearer s3cret")
	require.Equal(t, http.StatusOK, status)
	for _, path := range []string{"/health", "/ready", "/metrics"} {
		status, _ := h.get(path)
		require.Equal(t, http.StatusOK, status, "%s needs no key", path)
	}
}

func TestModelsCapabilitiesHealthMetrics(t *testing.T) {
	h := newHarness(t, setup{})
	status, body := h.get("/v1/models")
	require.Equal(t, http.StatusOK, status)
	var models struct {
		Object string           `json:"object"`
		Data   []map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &models))
	require.Equal(t, "list", models.Object)
	require.Len(t, models.Data, 1)
	require.Equal(t, "scripted", models.Data[0]["id"])
	require.Equal(t, "model", models.Data[0]["object"])
	require.Equal(t, 2048.0, models.Data[0]["max_model_len"])
	status, _ = h.get("/v1/models/scripted")
	require.Equal(t, http.StatusOK, status)
	status, _ = h.get("/v1/models/other")
	require.Equal(t, http.StatusNotFound, status)

	status, body = h.get("/v1/capabilities")
	require.Equal(t, http.StatusOK, status)
	var caps struct {
		ModelType   string                    `json:"model_type"`
		ArchSummary registry.Summary          `json:"arch_summary"`
		Paths       map[string]map[string]any `json:"paths"`
		PathOrder   []string                  `json:"path_order"`
	}
	require.NoError(t, json.Unmarshal(body, &caps))
	require.Equal(t, "qwen3_moe", caps.ModelType)
	arch, _ := registry.Default().Lookup("qwen3_moe")
	require.Equal(t, arch.Summary(), caps.ArchSummary, "the registry's arch_summary, as mach-archs --json prints it")
	require.Len(t, caps.PathOrder, len(capability.Paths()))
	for _, p := range preflight.ThisBuild(registry.Default()).Paths(arch, nil) {
		got := caps.Paths[string(p.Path)]
		require.Equal(t, string(p.Status), got["status"], "%s: the preflight gate's status", p.Path)
		require.Equal(t, p.Reason, got["reason"])
	}
	require.Equal(t, true, caps.Paths["openai_http"]["active"])
	require.Equal(t, false, caps.Paths["specdec"]["active"])

	status, body = h.get("/health")
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"status":"ok"}`, string(body))
	status, _ = h.get("/ready")
	require.Equal(t, http.StatusOK, status)

	for range 2 {
		h.post("/v1/chat/completions", map[string]any{"messages": []any{user("Hi")}})
	}
	h.post("/v1/chat/completions", `{`)
	status, body = h.get("/metrics")
	require.Equal(t, http.StatusOK, status)
	m := string(body)
	for _, want := range []string{
		`mach_requests_total{endpoint="chat_completions",status="200"} 2`,
		`mach_requests_total{endpoint="chat_completions",status="400"} 1`,
		"mach_queue_depth 0", "mach_running_sequences 0",
		"mach_generation_tokens_total 8",
		"mach_time_to_first_token_seconds_count 2",
		"mach_inter_token_latency_seconds_count 8", // 5 samples each, the end-of-sequence one included
		`mach_time_to_first_token_seconds_bucket{le="+Inf"} 2`,
		"mach_kv_cache_budget_bytes", "mach_kv_cache_usage_ratio", "mach_prefix_cache_hit_tokens_total",
		"# TYPE mach_inter_token_latency_seconds histogram",
	} {
		require.Contains(t, m, want)
	}
}

// A conversation's next turn reuses the cached prefix of the previous one.
func TestPrefixCacheHit(t *testing.T) {
	h := newHarness(t, setup{})
	first := []any{user("Hello there, how are you today?")}
	status, resp, _ := h.post("/v1/chat/completions", map[string]any{"messages": first})
	require.Equal(t, http.StatusOK, status)
	reply := message(resp)
	next := append(first, map[string]any{"role": "assistant", "content": reply["content"]}, user("And tomorrow?"))
	status, resp, _ = h.post("/v1/chat/completions", map[string]any{"messages": next})
	require.Equal(t, http.StatusOK, status)
	u := resp["usage"].(map[string]any)
	cached := u["prompt_tokens_details"].(map[string]any)["cached_tokens"].(float64)
	require.Greater(t, cached, 8.0, "the first turn's prompt is reused")
	require.Less(t, cached, u["prompt_tokens"].(float64))
	_, body := h.get("/metrics")
	require.Contains(t, string(body), fmt.Sprintf("mach_prefix_cache_hit_tokens_total %d\n", int(cached)))
}

// Queue full: 429 with Retry-After; draining: 503 and not ready.
func TestQueueFullAndDrain(t *testing.T) {
	gate := make(chan struct{})
	h := newHarness(t, setup{gate: gate, sched: scheduler.Options{MaxBatch: 1, MaxQueue: 1}})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	results := make(chan int, 2)
	for i := range 2 {
		go func() {
			results <- h.status(ctx, "/v1/chat/completions", `{"messages":[{"role":"user","content":"Hi"}],"stream":true}`)
		}()
		// One running, then one waiting (a second sent at once could find
		// the first still queued and get the 429).
		require.Eventually(t, func() bool { st := h.sched.Stats(); return st.Running == 1 && st.Waiting == i }, 5*time.Second, time.Millisecond)
	}
	status, resp, header := h.post("/v1/chat/completions", map[string]any{"messages": []any{user("Hi")}})
	require.Equal(t, http.StatusTooManyRequests, status)
	require.Equal(t, "queue_full", resp["error"].(map[string]any)["code"])
	require.Equal(t, "1", header.Get("Retry-After"))

	h.srv.Drain()
	status, resp, header = h.post("/v1/chat/completions", map[string]any{"messages": []any{user("Hi")}})
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Equal(t, "draining", resp["error"].(map[string]any)["code"])
	require.NotEmpty(t, header.Get("Retry-After"))
	code, _ := h.get("/ready")
	require.Equal(t, http.StatusServiceUnavailable, code)
	code, _ = h.get("/health")
	require.Equal(t, http.StatusOK, code, "alive while draining")
	go func() {
		for {
			select {
			case gate <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	require.Equal(t, http.StatusOK, recv(t, results, "first in-flight request"), "in-flight requests finish while draining")
	require.Equal(t, http.StatusOK, recv(t, results, "second in-flight request"))
}

// A client that goes away cancels its sequence; the batch goes on.
func TestClientDisconnect(t *testing.T) {
	gate := make(chan struct{})
	// No end-of-sequence: only the cancellation can end the sequence (the
	// server notices the disconnect while steps go on).
	h := newHarness(t, setup{gate: gate, fixture: "qwen3_moe", noEOS: true})
	ctx, cancel := context.WithCancel(t.Context())
	errs := make(chan error, 1)
	go func() {
		raw, _ := json.Marshal(map[string]any{"prompt": []int{5, 6, 7}, "max_tokens": 400, "stream": true})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.ts.URL+"/v1/completions", bytes.NewReader(raw))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		errs <- err
	}()
	require.Eventually(t, func() bool { return h.sched.Stats().Running == 1 }, 5*time.Second, time.Millisecond)
	for i := range 3 {
		select {
		case gate <- struct{}{}:
		case <-time.After(10 * time.Second):
			t.Fatalf("step %d never came: %+v", i, h.sched.Stats())
		}
	}
	cancel()
	require.Error(t, recv(t, errs, "the cancelled client"))
	pump, stop := context.WithCancel(t.Context())
	defer stop()
	go func() {
		for {
			select {
			case gate <- struct{}{}:
			case <-pump.Done():
				return
			}
		}
	}()
	require.Eventually(t, func() bool { st := h.sched.Stats(); return st.Running == 0 && st.Cancelled == 1 }, 5*time.Second, time.Millisecond, "%+v", h.sched.Stats())
	status, resp, _ := h.post("/v1/completions", map[string]any{"prompt": []int{5, 6, 7}, "max_tokens": 3})
	require.Equal(t, http.StatusOK, status, resp)
}

// N concurrent greedy requests give the tokens the same requests give one
// by one (the fixture model, with chunked prefill in the mix).
func TestBatchInvariance(t *testing.T) {
	h := newHarness(t, setup{fixture: "qwen3_moe", sched: scheduler.Options{StepTokens: 24, PrefixBlock: -1}})
	prompts := make([][]int, 8)
	for i := range prompts {
		for j := range 5 + 7*i {
			prompts[i] = append(prompts[i], 3+(i*31+j*17)%250)
		}
	}
	run := func(p []int) string {
		status, resp, _ := h.post("/v1/completions", map[string]any{"prompt": p, "max_tokens": 10, "temperature": 0, "logprobs": 0})
		require.Equal(t, http.StatusOK, status, resp)
		b, _ := json.Marshal(choice(resp)["logprobs"].(map[string]any)["tokens"])
		return string(b)
	}
	want := make([]string, len(prompts))
	for i, p := range prompts {
		want[i] = run(p)
	}
	got := make([]string, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Go(func() { got[i] = run(p) })
	}
	wg.Wait()
	require.Equal(t, want, got)
	require.Greater(t, h.sched.Stats().Steps, uint64(0))
}

// Graceful shutdown through Serve: in-flight requests finish, then Serve
// returns nil.
func TestServeShutdown(t *testing.T) {
	gate := make(chan struct{})
	dir := scripted(t)
	e, err := engine.Load(t.Context(), dir, engine.Options{Loaders: archs.Loaders()})
	require.NoError(t, err)
	defer e.Close()
	sched, err := scheduler.New(gated{e.Model(), gate}, scheduler.Options{EOS: e.EOS()})
	require.NoError(t, err)
	arch, _ := registry.Default().Lookup("qwen3_moe")
	srv := server.New(server.Model{Name: "m", Arch: arch, Prompter: e.Prompter, NewDecoder: e.NewDecoder}, sched, nil, server.Options{Logger: quiet})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, ln, srv) }()
	body := make(chan string, 1)
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"messages":[{"role":"user","content":"Hi"}],"stream":true}`))
		if err != nil {
			body <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body <- string(b)
	}()
	require.Eventually(t, func() bool { return sched.Stats().Running == 1 }, 5*time.Second, time.Millisecond)
	stop()
	pump, stopPump := context.WithCancel(t.Context())
	defer stopPump()
	go func() {
		for {
			select {
			case gate <- struct{}{}:
			case <-pump.Done():
				return
			}
		}
	}()
	got := recv(t, body, "the in-flight response")
	require.Contains(t, got, servertest.Greeting)
	require.True(t, strings.HasSuffix(got, "data: [DONE]\n\n"))
	select {
	case err := <-served:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

// While Serve drains (ctx cancelled, a generation in flight) the listener
// stays open: /ready and new generations get 503 (OpenAI error JSON,
// Retry-After), /health 200; the in-flight request completes with 200 and
// only then does Serve return.
func TestServeDrainRefusesNewRequests(t *testing.T) {
	gate := make(chan struct{})
	dir := scripted(t)
	e, err := engine.Load(t.Context(), dir, engine.Options{Loaders: archs.Loaders()})
	require.NoError(t, err)
	defer e.Close()
	sched, err := scheduler.New(gated{e.Model(), gate}, scheduler.Options{EOS: e.EOS(), MaxBatch: 1, MaxQueue: 1})
	require.NoError(t, err)
	arch, _ := registry.Default().Lookup("qwen3_moe")
	srv := server.New(server.Model{Name: "m", Arch: arch, Prompter: e.Prompter, NewDecoder: e.NewDecoder}, sched, nil,
		server.Options{Logger: quiet, ShutdownTimeout: time.Minute})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, ln, srv) }()
	type result struct {
		status int
		body   string
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := http.Post(base+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"messages":[{"role":"user","content":"Hi"}],"stream":true}`))
		if err != nil {
			inflight <- result{body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- result{resp.StatusCode, string(b)}
	}()
	require.Eventually(t, func() bool { return sched.Stats().Running == 1 }, 5*time.Second, time.Millisecond)
	stop()
	get := func(path string) int {
		resp, err := http.Get(base + path)
		require.NoError(t, err, "GET %s while draining: the listener stays open", path)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Eventually(t, func() bool { return get("/ready") == http.StatusServiceUnavailable }, 5*time.Second, time.Millisecond)
	require.Equal(t, http.StatusOK, get("/health"), "alive while draining")
	for _, tc := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"Hi"}]}`},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"Hi"}],"stream":true}`},
		{"/v1/completions", `{"prompt":"Hi"}`},
	} {
		resp, err := http.Post(base+tc.path, "application/json", strings.NewReader(tc.body))
		require.NoError(t, err, "POST %s while draining: the listener stays open", tc.path)
		var got struct {
			Error struct {
				Code, Type, Message string
			}
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, tc.path)
		require.Equal(t, "draining", got.Error.Code)
		require.Equal(t, "server_error", got.Error.Type)
		require.NotEmpty(t, got.Error.Message)
		require.NotEmpty(t, resp.Header.Get("Retry-After"))
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned with a generation in flight: %v", err)
	default:
	}
	pump, stopPump := context.WithCancel(t.Context())
	defer stopPump()
	go func() {
		for {
			select {
			case gate <- struct{}{}:
			case <-pump.Done():
				return
			}
		}
	}()
	got := recv(t, inflight, "the in-flight response")
	require.Equal(t, http.StatusOK, got.status, got.body)
	require.Contains(t, got.body, servertest.Greeting)
	require.True(t, strings.HasSuffix(got.body, "data: [DONE]\n\n"))
	select {
	case err := <-served:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the in-flight request finished")
	}
	_, err = http.Get(base + "/health")
	require.Error(t, err, "the listener is closed once Serve returns")
}

// Thousands of requests (some streamed, some abandoned) leave no
// goroutine behind.
func TestNoGoroutineLeak(t *testing.T) {
	h := newHarness(t, setup{sched: scheduler.Options{MaxBatch: 16, MaxQueue: 4096}})
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: tr}
	base := runtime.NumGoroutine()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range 2000 {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			body := fmt.Sprintf(`{"messages":[{"role":"user","content":"hi %d"}],"stream":%v}`, i%50, i%2 == 0)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.ts.URL+"/v1/chat/completions", strings.NewReader(body))
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			if i%5 == 0 {
				cancel() // abandon mid-response
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	require.Eventually(t, func() bool { st := h.sched.Stats(); return st.Running == 0 && st.Waiting == 0 }, 10*time.Second, time.Millisecond)
	tr.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+2 { // httptest's own connection goroutines may lag
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := h.sched.Stats()
	require.Equal(t, uint64(2000), st.Finished+st.Cancelled)
}

// JSON mode: the output is a JSON object (or a prefix of one when
// max_tokens cuts it), whatever the model prefers; json_schema is refused.
func TestJSONMode(t *testing.T) {
	h := newHarness(t, setup{fixture: "qwen3_moe"})
	for _, stream := range []bool{false, true} {
		body := map[string]any{"messages": []any{user("Give me JSON")}, "response_format": map[string]any{"type": "json_object"},
			"max_tokens": 48, "temperature": 0, "stream": stream}
		var content, finish string
		if stream {
			status, events, done := h.stream(t.Context(), "/v1/chat/completions", body)
			require.Equal(t, http.StatusOK, status)
			require.True(t, done)
			for _, ev := range events {
				c := ev["choices"].([]any)[0].(map[string]any)
				if s, ok := c["delta"].(map[string]any)["content"].(string); ok {
					content += s
				}
				if f, ok := c["finish_reason"].(string); ok {
					finish = f
				}
			}
		} else {
			status, resp, _ := h.post("/v1/chat/completions", body)
			require.Equal(t, http.StatusOK, status, resp)
			content, finish = message(resp)["content"].(string), choice(resp)["finish_reason"].(string)
		}
		t.Logf("stream=%v finish=%s content=%q", stream, finish, content)
		require.NotEmpty(t, content)
		if finish == "stop" {
			var v map[string]any
			require.NoError(t, json.Unmarshal([]byte(content), &v), "a complete JSON object: %q", content)
		} else {
			require.Equal(t, "length", finish)
			require.Equal(t, byte('{'), strings.TrimSpace(content)[0], "an object's prefix: %q", content)
		}
	}
	status, resp, _ := h.post("/v1/chat/completions", map[string]any{"messages": []any{user("x")},
		"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "s", "schema": map[string]any{}}}})
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "not_supported", resp["error"].(map[string]any)["code"])
}
