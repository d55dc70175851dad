package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/sample"
	"github.com/maniac-ai/mach/pkg/scheduler"
)

// decodeJSON reads a request body into v. A value of the wrong type is a
// 400 naming its JSON path (messages[0].role) and the types in JSON's
// words, not Go's.
func decodeJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err // *http.MaxBytesError: 413
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("", "empty request body: send a JSON object")
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return typeError(body, ute)
		}
		return badRequest("", "invalid JSON body: %v", err)
	}
	return nil
}

// typeError turns a JSON type mismatch into a 400 with the value's JSON
// path as param.
func typeError(body []byte, ute *json.UnmarshalTypeError) *apiError {
	got := jsonValueWords(ute.Value)
	path, ok := jsonPathAt(body, ute.Offset)
	if !ok {
		// Go's path names embedded structs by their Go type.
		path = strings.ReplaceAll(ute.Field, "samplingFields.", "")
	}
	if path == "" {
		return badRequest("", "the request body must be a JSON object, got %s", got)
	}
	want := jsonTypeWords(ute.Type)
	if strings.HasPrefix(ute.Value, "number ") && (want == "a number" || want == "an integer") {
		// The right kind of value, out of the Go type's range or not whole.
		n := strings.TrimPrefix(ute.Value, "number ")
		if want == "a number" {
			return badRequest(path, "%s %s is out of range", path, n)
		}
		return badRequest(path, "%s must be an integer in range, got %s", path, n)
	}
	return badRequest(path, "%s must be %s, got %s", path, want, got)
}

// jsonValueWords names the kind of JSON value an UnmarshalTypeError found
// ("string", "number 1.5", "array", ...).
func jsonValueWords(v string) string {
	switch {
	case strings.HasPrefix(v, "number "):
		return strings.TrimPrefix(v, "number ")
	case v == "array", v == "object":
		return "an " + v
	case v == "bool":
		return "a boolean"
	case v == "":
		return "a value of another type"
	}
	return "a " + v
}

// jsonTypeWords names the JSON value a Go type takes.
func jsonTypeWords(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another type"
}

// jsonPathAt returns the path (messages[0].role; "" for the top level)
// of the innermost JSON value of body that ends at or contains byte
// offset off: where encoding/json reports a type mismatch (after a
// scalar, or just inside an array or object).
func jsonPathAt(body []byte, off int64) (string, bool) {
	type frame struct {
		array   bool
		key     string
		index   int
		wantKey bool
	}
	var stack []frame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.array {
				fmt.Fprintf(&b, "[%d]", f.index)
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		}
		return b.String()
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			if len(stack) == 0 {
				return "", false
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return "", false // the whole value, and no mismatch found
			}
			top := &stack[len(stack)-1]
			if top.array {
				top.index++
			} else {
				top.wantKey = true
			}
			continue
		}
		if n := len(stack); n > 0 && !stack[n-1].array && stack[n-1].wantKey {
			stack[n-1].key, _ = tok.(string)
			stack[n-1].wantKey = false
			continue
		}
		// A value: its path is the current one.
		here := path()
		if dec.InputOffset() >= off {
			return here, true
		}
		if d, ok := tok.(json.Delim); ok {
			stack = append(stack, frame{array: d == '[', wantKey: d == '{'})
			continue
		}
		if n := len(stack); n > 0 {
			if stack[n-1].array {
				stack[n-1].index++
			} else {
				stack[n-1].wantKey = true
			}
		} else {
			return "", false
		}
	}
}

// sampling validates the sampling fields (OpenAI's ranges) and returns
// the sampler options and stop strings.
func (f *samplingFields) sampling(logprobs bool, topLogprobs int) (sample.Options, []string, error) {
	o := sample.Options{Temperature: 1, Logprobs: logprobs, TopLogprobs: topLogprobs}
	if len(f.LogitBias) > 0 {
		return o, nil, notSupported("logit_bias", "logit_bias is not supported by this build's sampler")
	}
	inRange := func(name string, p *float64, lo, hi float64, dst *float64) error {
		if p == nil {
			return nil
		}
		if math.IsNaN(*p) || *p < lo || *p > hi {
			return badRequest(name, "%s %g is out of range: want %g to %g", name, *p, lo, hi)
		}
		*dst = *p
		return nil
	}
	for _, err := range []error{
		inRange("temperature", f.Temperature, 0, 2, &o.Temperature),
		inRange("top_p", f.TopP, 0, 1, &o.TopP),
		inRange("min_p", f.MinP, 0, 1, &o.MinP),
		inRange("presence_penalty", f.PresencePenalty, -2, 2, &o.PresencePenalty),
		inRange("frequency_penalty", f.FrequencyPenalty, -2, 2, &o.FrequencyPenalty),
		inRange("repetition_penalty", f.RepetitionPenalty, 0, 10, &o.RepetitionPenalty),
	} {
		if err != nil {
			return o, nil, err
		}
	}
	if f.TopK != nil && *f.TopK > 0 {
		o.TopK = *f.TopK
	}
	if f.Seed != nil {
		seed := uint64(*f.Seed)
		o.Seed = &seed
	}
	stop, err := stopStrings(f.Stop)
	return o, stop, err
}

// maxTokens picks the completion budget: the request's, else what the
// context leaves after the prompt.
func (s *Server) maxTokens(requested *int, param string, promptLen int) (int, error) {
	left := s.sched.Options().ContextLength - promptLen
	if requested != nil {
		if *requested < 1 {
			return 0, badRequest(param, "%s %d: want at least 1", param, *requested)
		}
		return *requested, nil
	}
	if left < 1 {
		return 0, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "context_length_exceeded", Param: "messages",
			Message: fmt.Sprintf("the prompt is %d tokens; the context length is %d", promptLen, s.sched.Options().ContextLength)}
	}
	return left, nil
}

// toolChoice is what tool_choice asks for.
type toolChoice struct {
	mode string // none, auto, required, function
	name string
}

// describe names the choice in error messages.
func (c toolChoice) describe() string {
	if c.mode == "function" {
		return fmt.Sprintf("{\"type\":\"function\",\"function\":{\"name\":%q}}", c.name)
	}
	return fmt.Sprintf("%q", c.mode)
}

func parseToolChoice(raw json.RawMessage, tools []json.RawMessage) (toolChoice, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		if len(tools) > 0 {
			return toolChoice{mode: "auto"}, nil
		}
		return toolChoice{mode: "none"}, nil
	}
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		switch mode {
		case "none", "auto", "required":
			return toolChoice{mode: mode}, nil
		}
		return toolChoice{}, badRequest("tool_choice", "tool_choice %q: want none, auto, required or {\"type\":\"function\",\"function\":{\"name\":…}}", mode)
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &named); err != nil || named.Type != "function" || named.Function.Name == "" {
		return toolChoice{}, badRequest("tool_choice", "tool_choice must be none, auto, required or {\"type\":\"function\",\"function\":{\"name\":…}}")
	}
	return toolChoice{mode: "function", name: named.Function.Name}, nil
}

// toolNames validates tools and returns their names.
func toolNames(tools []json.RawMessage) ([]string, error) {
	names := make([]string, 0, len(tools))
	for i, raw := range tools {
		var t struct {
			Type     string `json:"type"`
			Function *struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, badRequest(fmt.Sprintf("tools[%d]", i), "tools[%d] is not an object: %v", i, err)
		}
		if t.Type != "function" {
			return nil, notSupported(fmt.Sprintf("tools[%d].type", i), "tools[%d].type %q: only function tools are supported", i, t.Type)
		}
		if t.Function == nil || t.Function.Name == "" {
			return nil, badRequest(fmt.Sprintf("tools[%d].function.name", i), "tools[%d].function.name is missing", i)
		}
		names = append(names, t.Function.Name)
	}
	return names, nil
}

// messages converts the request's messages for the chat template.
func messages(in []chatMessageIn) ([]chat.Message, error) {
	if len(in) == 0 {
		return nil, badRequest("messages", "messages is empty: send at least one message")
	}
	out := make([]chat.Message, len(in))
	for i, m := range in {
		param := fmt.Sprintf("messages[%d]", i)
		switch m.Role {
		case "system", "developer", "user", "assistant", "tool":
		case "":
			return nil, badRequest(param+".role", "%s.role is missing", param)
		default:
			return nil, badRequest(param+".role", "%s.role %q: want system, developer, user, assistant or tool", param, m.Role)
		}
		text, err := contentText(m.Content, param+".content")
		if err != nil {
			return nil, err
		}
		msg := chat.Message{Role: m.Role, Content: text, Name: m.Name, ToolCallID: m.ToolCallID}
		switch {
		case m.ReasoningContent != nil:
			msg.ReasoningContent = *m.ReasoningContent
		case m.Reasoning != nil:
			msg.ReasoningContent = *m.Reasoning
		}
		if len(m.ToolCalls) > 0 && m.Role != "assistant" {
			return nil, badRequest(param+".tool_calls", "%s: only assistant messages carry tool_calls", param)
		}
		for j, tc := range m.ToolCalls {
			if tc.Function.Name == "" {
				return nil, badRequest(fmt.Sprintf("%s.tool_calls[%d].function.name", param, j), "%s.tool_calls[%d].function.name is missing", param, j)
			}
			args, err := argumentsText(tc.Function.Arguments)
			if err != nil {
				return nil, badRequest(fmt.Sprintf("%s.tool_calls[%d].function.arguments", param, j), "%s.tool_calls[%d].function.arguments: %v", param, j, err)
			}
			msg.ToolCalls = append(msg.ToolCalls, chat.ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: args})
		}
		if m.Role == "tool" && m.ToolCallID == "" {
			return nil, badRequest(param+".tool_call_id", "%s: a tool message needs tool_call_id", param)
		}
		out[i] = msg
	}
	return out, nil
}

// argumentsText reads tool-call arguments: OpenAI sends a JSON string,
// some clients an object.
func argumentsText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "{}", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "", err
	}
	return b.String(), nil
}

// chatJob is a validated chat request ready to generate.
type chatJob struct {
	req      *chatRequest
	prompt   []int32
	gen      *scheduler.Request
	logprobs bool
	// parser setup
	format        chat.Format
	tools         []json.RawMessage
	reasoningOpen bool
	noTools       bool
}

func (s *Server) chatJob(req *chatRequest) (*chatJob, error) {
	if err := s.checkModel(req.Model); err != nil {
		return nil, err
	}
	if req.N != nil && *req.N != 1 {
		return nil, notSupported("n", "n=%d is not supported: send separate requests (they are batched together)", *req.N)
	}
	if len(bytes.TrimSpace(req.Functions)) > 0 && string(bytes.TrimSpace(req.Functions)) != "null" ||
		len(bytes.TrimSpace(req.FunctionCall)) > 0 && string(bytes.TrimSpace(req.FunctionCall)) != "null" {
		return nil, notSupported("functions", "the legacy functions/function_call fields are not supported: send tools and tool_choice")
	}
	jsonMode := false
	if rf := req.ResponseFormat; rf != nil {
		switch rf.Type {
		case "", "text":
		case "json_object":
			jsonMode = true
		case "json_schema":
			return nil, notSupported("response_format", "response_format json_schema is not supported yet: this build constrains output to any JSON object (json_object), not to a schema")
		default:
			return nil, badRequest("response_format", "response_format type %q: want text, json_object or json_schema", rf.Type)
		}
	}
	msgs, err := messages(req.Messages)
	if err != nil {
		return nil, err
	}
	names, err := toolNames(req.Tools)
	if err != nil {
		return nil, err
	}
	choice, err := parseToolChoice(req.ToolChoice, req.Tools)
	if err != nil {
		return nil, err
	}
	var forceNames []string // tool_choice required or named: the call's possible names
	switch choice.mode {
	case "required":
		if len(names) == 0 {
			return nil, badRequest("tool_choice", "tool_choice \"required\" needs tools: send at least one function tool")
		}
		forceNames = names
	case "function":
		found := false
		for _, n := range names {
			found = found || n == choice.name
		}
		if !found {
			return nil, badRequest("tool_choice", "tool_choice names %q, which is not in tools", choice.name)
		}
		forceNames = []string{choice.name}
	}
	if forceNames != nil && jsonMode {
		return nil, badRequest("tool_choice", "response_format json_object and tool_choice %s cannot be combined: the output is either a JSON object or a tool call; drop one of the two fields", choice.describe())
	}
	topLogprobs := 0
	logprobs := req.Logprobs != nil && *req.Logprobs
	if req.TopLogprobs != nil {
		if !logprobs && *req.TopLogprobs > 0 {
			return nil, badRequest("top_logprobs", "top_logprobs needs logprobs: true")
		}
		if *req.TopLogprobs < 0 || *req.TopLogprobs > 20 {
			return nil, badRequest("top_logprobs", "top_logprobs %d is out of range: want 0 to 20", *req.TopLogprobs)
		}
		topLogprobs = *req.TopLogprobs
	}
	opts, stop, err := req.sampling(logprobs, topLogprobs)
	if err != nil {
		return nil, err
	}
	kwargs := map[string]any{}
	for k, v := range req.ChatTemplateKwargs {
		kwargs[k] = v
	}
	if req.ReasoningEffort != "" {
		kwargs["reasoning_effort"] = req.ReasoningEffort
	}
	job := &chatJob{req: req, logprobs: logprobs, format: s.format}
	templateTools := req.Tools
	if choice.mode == "none" {
		// The model is not told about the tools and its output is not
		// parsed for calls.
		templateTools, job.noTools = nil, true
	}
	ids, text, err := s.model.Prompter.Render(&engine.Request{Messages: msgs, Tools: templateTools, TemplateKwargs: kwargs})
	if err != nil {
		if errors.Is(err, chat.ErrNoTemplate) {
			return nil, notSupported("messages", "this model has no chat template: use /v1/completions with a prompt")
		}
		return nil, err
	}
	job.prompt = ids
	job.tools = templateTools
	job.reasoningOpen = chat.PromptOpensReasoning(s.format, text)
	param := "max_tokens"
	mt := req.MaxTokens
	if req.MaxCompletionTokens != nil {
		param, mt = "max_completion_tokens", req.MaxCompletionTokens
	}
	n, err := s.maxTokens(mt, param, len(ids))
	if err != nil {
		return nil, err
	}
	job.gen = &scheduler.Request{Prompt: ids, MaxTokens: n, Sampling: opts, Stop: stop, Decoder: s.newDecoder(s.format)}
	if jsonMode {
		v, err := s.jsonVocabulary()
		if err != nil {
			return nil, notSupported("response_format", "response_format json_object needs the model's tokenizer: %v", err)
		}
		job.gen.Constraint = newJSONConstraint(v)
	}
	if forceNames != nil {
		g, err := chat.ForceToolCall(s.format, forceNames, job.reasoningOpen)
		switch {
		case errors.Is(err, chat.ErrNoToolFormat):
			return nil, notSupported("tool_choice", "tool_choice %s is not supported for this model: its chat template has no tool-call format (output format %s), so no call can be forced; use \"auto\" or \"none\"", choice.describe(), s.format)
		case err != nil:
			return nil, badRequest("tool_choice", "tool_choice %s: %v", choice.describe(), err)
		}
		v, err := s.vocabulary(keepsSpecial(s.format))
		if err != nil {
			return nil, notSupported("tool_choice", "tool_choice %s needs the model's tokenizer: %v", choice.describe(), err)
		}
		job.gen.Constraint = newToolConstraint(v, g)
	}
	return job, nil
}

// newDecoder keeps special tokens in the text where the format's markers
// are special tokens (harmony, Gemma 4, DeepSeek DSML); Qwen's markers are
// ordinary added tokens, so its special tokens are dropped.
func (s *Server) newDecoder(f chat.Format) engine.TextDecoder {
	if s.model.NewDecoder == nil {
		return nil
	}
	return s.model.NewDecoder(!keepsSpecial(f))
}

// parser returns the output parser for a job.
func (j *chatJob) parser() chat.Parser {
	f := j.format
	if j.noTools {
		switch f {
		case chat.FormatQwen3, chat.FormatQwen3Coder, chat.FormatDeepSeekDSML:
			f = chat.FormatPlain // reasoning only
		}
	}
	return chat.NewParser(f, chat.ParserOptions{Tools: j.tools, ReasoningOpen: j.reasoningOpen})
}

// chatOutput folds parser events into a response or stream deltas.
type chatOutput struct {
	noTools   bool
	content   strings.Builder
	reasoning strings.Builder
	calls     []toolCallOut
}

// apply adds events and returns the delta they make (nil when empty).
func (o *chatOutput) apply(events []chat.Event) *chatDelta {
	var d chatDelta
	var content, reasoning strings.Builder
	for _, e := range events {
		switch e.Kind {
		case chat.EventContent:
			content.WriteString(e.Text)
		case chat.EventReasoning:
			reasoning.WriteString(e.Text)
		case chat.EventToolCallStart:
			if o.noTools {
				continue
			}
			idx := e.Index
			o.calls = append(o.calls, toolCallOut{ID: e.Call.ID, Type: "function", Function: functionCall{Name: e.Call.Name}})
			d.ToolCalls = append(d.ToolCalls, toolCallOut{Index: &idx, ID: e.Call.ID, Type: "function", Function: functionCall{Name: e.Call.Name}})
		case chat.EventToolCallArgs:
			if o.noTools {
				continue
			}
			if e.Index < len(o.calls) {
				o.calls[e.Index].Function.Arguments += e.Text
			}
			idx := e.Index
			d.ToolCalls = append(d.ToolCalls, toolCallOut{Index: &idx, Function: functionCall{Arguments: e.Text}})
		case chat.EventToolCallEnd:
			if o.noTools {
				// tool_choice none: a call the model wrote anyway is
				// returned as text, not dropped.
				b, _ := json.Marshal(map[string]any{"name": e.Call.Name, "arguments": json.RawMessage(validJSON(e.Call.Arguments))})
				content.Write(b)
			}
		}
	}
	if content.Len() > 0 {
		o.content.WriteString(content.String())
		d.Content = strPtr(content.String())
	}
	if reasoning.Len() > 0 {
		o.reasoning.WriteString(reasoning.String())
		d.ReasoningContent = strPtr(reasoning.String())
	}
	if d.Content == nil && d.ReasoningContent == nil && d.ToolCalls == nil {
		return nil
	}
	return &d
}

func validJSON(s string) string {
	if json.Valid([]byte(s)) {
		return s
	}
	b, _ := json.Marshal(s)
	return string(b)
}

func finishReason(r string, calls int) string {
	if r == engine.FinishStop && calls > 0 {
		return "tool_calls"
	}
	return r
}

// tokenText is a token's own text for logprobs.
func (s *Server) tokenText(id int32) string {
	tok, _ := s.model.Prompter.Tokenizer()
	if tok == nil {
		return fmt.Sprintf("<%d>", id)
	}
	return tok.Decode([]int32{id}, false)
}

func byteValues(s string) []int {
	out := make([]int, len(s))
	for i := range len(s) {
		out[i] = int(s[i])
	}
	return out
}

func (s *Server) logprobEntry(tk engine.Token) tokenLogprob {
	text := s.tokenText(tk.ID)
	e := tokenLogprob{Token: text, Logprob: tk.Logprob, Bytes: byteValues(text), TopLogprobs: []topLogprob{}}
	for _, t := range tk.Top {
		tt := s.tokenText(t.Token)
		e.TopLogprobs = append(e.TopLogprobs, topLogprob{Token: tt, Logprob: t.Logprob, Bytes: byteValues(tt)})
	}
	return e
}

func usageOf(res *scheduler.Result) usage {
	return usage{PromptTokens: res.PromptTokens, CompletionTokens: len(res.Tokens), TotalTokens: res.PromptTokens + len(res.Tokens),
		PromptTokensDetails: promptDetails{CachedTokens: res.CachedTokens}}
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, asAPIError(err))
		return
	}
	job, err := s.chatJob(&req)
	if err != nil {
		writeError(w, asAPIError(err))
		return
	}
	if req.Stream {
		s.streamChat(w, r, job)
		return
	}
	parser := job.parser()
	out := &chatOutput{noTools: job.noTools}
	var lps []tokenLogprob
	res, err := s.sched.Generate(r.Context(), job.gen, func(tk engine.Token) error {
		out.apply(parser.Feed(tk.Text))
		if job.logprobs && tk.ID >= 0 {
			lps = append(lps, s.logprobEntry(tk))
		}
		return nil
	})
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away
		}
		writeError(w, asAPIError(err))
		return
	}
	out.apply(parser.Finish())
	msg := chatMessageOut{Role: "assistant", Content: strPtr(out.content.String())}
	if len(out.calls) > 0 {
		msg.ToolCalls = out.calls
		if out.content.Len() == 0 {
			msg.Content = nil
		}
	}
	if out.reasoning.Len() > 0 {
		msg.ReasoningContent = strPtr(out.reasoning.String())
	}
	choice := chatChoice{Message: msg, FinishReason: finishReason(res.FinishReason, len(out.calls))}
	if job.logprobs {
		choice.Logprobs = &chatLogprobs{Content: lps}
		if lps == nil {
			choice.Logprobs.Content = []tokenLogprob{}
		}
	}
	writeJSON(w, http.StatusOK, chatResponse{
		ID: newID("chatcmpl-"), Object: "chat.completion", Created: time.Now().Unix(), Model: s.model.Name,
		SystemFingerprint: s.fingerprint(), Choices: []chatChoice{choice}, Usage: usageOf(res),
	})
}

func (s *Server) streamChat(w http.ResponseWriter, r *http.Request, job *chatJob) {
	sse := newSSE(w)
	id, created := newID("chatcmpl-"), time.Now().Unix()
	chunk := func(d chatDelta, lp *chatLogprobs, finish *string) chatChunk {
		return chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.model.Name, SystemFingerprint: s.fingerprint(),
			Choices: []chatChunkChoice{{Delta: d, Logprobs: lp, FinishReason: finish}}}
	}
	parser := job.parser()
	out := &chatOutput{noTools: job.noTools}
	started := false
	send := func(d *chatDelta, lp []tokenLogprob) error {
		if !started {
			started = true
			if err := sse.event(chunk(chatDelta{Role: "assistant", Content: strPtr("")}, nil, nil)); err != nil {
				return err
			}
		}
		if d == nil && lp == nil {
			return nil
		}
		var l *chatLogprobs
		if lp != nil {
			l = &chatLogprobs{Content: lp}
		}
		if d == nil {
			d = &chatDelta{}
		}
		return sse.event(chunk(*d, l, nil))
	}
	res, err := s.sched.Generate(r.Context(), job.gen, func(tk engine.Token) error {
		var lp []tokenLogprob
		if job.logprobs && tk.ID >= 0 {
			lp = []tokenLogprob{s.logprobEntry(tk)}
		}
		return send(out.apply(parser.Feed(tk.Text)), lp)
	})
	if err == nil {
		err = send(out.apply(parser.Finish()), nil)
	}
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		sse.fail(err)
		return
	}
	reason := finishReason(res.FinishReason, len(out.calls))
	if err := sse.event(chunk(chatDelta{}, nil, &reason)); err != nil {
		return
	}
	if o := job.req.StreamOptions; o != nil && o.IncludeUsage {
		u := usageOf(res)
		if err := sse.event(chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.model.Name,
			SystemFingerprint: s.fingerprint(), Choices: []chatChunkChoice{}, Usage: &u}); err != nil {
			return
		}
	}
	_ = sse.done()
}
