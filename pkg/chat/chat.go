// Package chat turns conversations into model prompts and model output back
// into OpenAI-shaped messages: it renders a checkpoint's Hugging Face chat
// template (package jinja) exactly as transformers' apply_chat_template does,
// encodes and decodes gpt-oss's harmony format natively, and parses model
// output incrementally into content, reasoning and tool calls for each model
// family mach serves (Qwen3 JSON tool calls, Qwen3.5/3.6 XML tool calls,
// harmony, Gemma 4, DeepSeek DSML).
package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/maniac-ai/mach/pkg/chat/jinja"
	"github.com/maniac-ai/mach/pkg/fault"
)

// ToolCall is one function call in OpenAI's shape; Arguments is a JSON
// string (usually an object).
type ToolCall struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Message is one conversation turn. Role is system, developer, user,
// assistant or tool.
type Message struct {
	Role             string     `json:"role"`
	Content          string     `json:"content"`
	ReasoningContent string     `json:"reasoning_content,omitempty"`
	Name             string     `json:"name,omitempty"`
	ToolCallID       string     `json:"tool_call_id,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
}

// Options are the inputs of one render besides the messages.
type Options struct {
	// AddGenerationPrompt appends the assistant header the model continues.
	AddGenerationPrompt bool
	// Tools are OpenAI tool objects ({"type":"function","function":{…}}),
	// passed to the template in their original key order.
	Tools []json.RawMessage
	// Kwargs are extra template variables: enable_thinking (Qwen),
	// reasoning_effort and builtin_tools (gpt-oss), and so on. They override
	// the special-token variables.
	Kwargs map[string]any
	// Now is the time strftime_now formats; the zero value is time.Now().
	Now time.Time
}

// Template is a loaded chat template with the special-token variables
// (bos_token, eos_token, …) of its tokenizer.
type Template struct {
	// Source is the template text; Origin says where it came from.
	Source string
	Origin string
	// Special holds the special-token variables the template sees.
	Special map[string]string

	tpl *jinja.Template
}

// ErrNoTemplate: the checkpoint ships no chat template.
var ErrNoTemplate = errors.New("no chat template")

// Load reads the chat template of a checkpoint or tokenizer directory the
// way transformers does: chat_template.jinja, else chat_template.json, else
// the chat_template field of tokenizer_config.json (the "default" entry when
// it is a list). Special tokens come from tokenizer_config.json.
func Load(dir string) (*Template, error) {
	special, err := loadSpecialTokens(dir)
	if err != nil {
		return nil, err
	}
	src, origin, err := findTemplate(dir)
	if err != nil {
		return nil, err
	}
	return newTemplate(src, origin, special)
}

// LoadFile reads the template from path (for checkpoints without one, like
// the gpt-oss tokenizer package) and the special tokens from dir.
func LoadFile(dir, path string) (*Template, error) {
	special, err := loadSpecialTokens(dir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("chat template: %w", err), fault.ErrIO)
	}
	return newTemplate(string(b), path, special)
}

// Parse compiles template source with the given special tokens.
func Parse(source string, special map[string]string) (*Template, error) {
	return newTemplate(source, "inline", special)
}

func newTemplate(src, origin string, special map[string]string) (*Template, error) {
	tpl, err := jinja.Parse(src)
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("chat template %s: %w (mach cannot render this template; pass a supported one)", origin, err), fault.ErrUnsupported)
	}
	if special == nil {
		special = map[string]string{}
	}
	return &Template{Source: src, Origin: origin, Special: special, tpl: tpl}, nil
}

func findTemplate(dir string) (string, string, error) {
	p := filepath.Join(dir, "chat_template.jinja")
	if b, err := os.ReadFile(p); err == nil {
		return string(b), p, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", fault.Mark(fmt.Errorf("chat template: %w", err), fault.ErrIO)
	}
	p = filepath.Join(dir, "chat_template.json")
	if b, err := os.ReadFile(p); err == nil {
		var f struct {
			ChatTemplate json.RawMessage `json:"chat_template"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return "", "", fault.Mark(fmt.Errorf("%s: %w", p, err), fault.ErrIO)
		}
		if s, ok, err := templateField(f.ChatTemplate); err != nil {
			return "", "", fault.Mark(fmt.Errorf("%s: chat_template: %w", p, err), fault.ErrIO)
		} else if ok {
			return s, p, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", fault.Mark(fmt.Errorf("chat template: %w", err), fault.ErrIO)
	}
	p = filepath.Join(dir, "tokenizer_config.json")
	cfg, err := readTokenizerConfig(dir)
	if err != nil {
		return "", "", err
	}
	if s, ok, err := templateField(cfg["chat_template"]); err != nil {
		return "", "", fault.Mark(fmt.Errorf("%s: chat_template: %w", p, err), fault.ErrIO)
	} else if ok {
		return s, p + " (chat_template)", nil
	}
	return "", "", fault.Mark(fmt.Errorf("%s: %w: no chat_template.jinja, chat_template.json or chat_template in tokenizer_config.json (give a template file explicitly)", dir, ErrNoTemplate), fault.ErrIO)
}

// templateField decodes a chat_template value: a string, or a list of
// {"name", "template"} whose "default" entry is used.
func templateField(raw json.RawMessage) (string, bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, s != "", nil
	}
	var list []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return "", false, fmt.Errorf("neither a string nor a list of named templates")
	}
	for _, e := range list {
		if e.Name == "default" {
			return e.Template, true, nil
		}
	}
	return "", false, fmt.Errorf("list of named templates has no \"default\" entry")
}

func readTokenizerConfig(dir string) (map[string]json.RawMessage, error) {
	p := filepath.Join(dir, "tokenizer_config.json")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]json.RawMessage{}, nil
	}
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("chat template: %w", err), fault.ErrIO)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fault.Mark(fmt.Errorf("%s: %w", p, err), fault.ErrIO)
	}
	return cfg, nil
}

var specialTokenKeys = []string{"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}

// loadSpecialTokens reads the special-token strings transformers passes to
// templates; a token is a string or an AddedToken object with "content".
func loadSpecialTokens(dir string) (map[string]string, error) {
	cfg, err := readTokenizerConfig(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, k := range specialTokenKeys {
		raw, ok := cfg[k]
		if !ok || string(raw) == "null" {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			out[k] = s
			continue
		}
		var tok struct {
			Content *string `json:"content"`
		}
		if err := json.Unmarshal(raw, &tok); err != nil || tok.Content == nil {
			return nil, fault.Mark(fmt.Errorf("%s: %s is neither a string nor an object with \"content\"", filepath.Join(dir, "tokenizer_config.json"), k), fault.ErrIO)
		}
		out[k] = *tok.Content
	}
	return out, nil
}

// Render renders the conversation. Errors are classified: a template that
// rejects the conversation (raise_exception) or fails to evaluate is
// fault.ErrUsage, since the request is what differs between renders.
func (t *Template) Render(msgs []Message, opts Options) (string, error) {
	vars, err := t.variables(msgs, opts)
	if err != nil {
		return "", err
	}
	out, err := t.tpl.Render(vars, jinja.RenderOptions{Now: opts.Now})
	if err != nil {
		return "", fault.Mark(fmt.Errorf("chat template %s: %w", t.Origin, err), fault.ErrUsage)
	}
	return out, nil
}

func (t *Template) variables(msgs []Message, opts Options) (map[string]any, error) {
	vars := map[string]any{}
	for k, v := range t.Special {
		vars[k] = v
	}
	ms, err := MessageValues(msgs)
	if err != nil {
		return nil, err
	}
	vars["messages"] = ms
	vars["tools"] = nil
	if len(opts.Tools) > 0 {
		tools := make([]any, len(opts.Tools))
		for i, raw := range opts.Tools {
			v, err := jinja.FromJSON(raw)
			if err != nil {
				return nil, fault.Mark(fmt.Errorf("tools[%d]: %w", i, err), fault.ErrUsage)
			}
			tools[i] = v
		}
		vars["tools"] = tools
	}
	vars["documents"] = nil
	vars["add_generation_prompt"] = opts.AddGenerationPrompt
	for k, v := range opts.Kwargs {
		vars[k] = v
	}
	return vars, nil
}

// MessageValues builds the message dicts a template sees, in the shape
// Hugging Face templates expect: content always a string; reasoning_content
// and thinking (gpt-oss reads the latter) only when there is reasoning;
// tool_calls as [{"id","type":"function","function":{"name","arguments"}}]
// with arguments decoded to an object when they are valid JSON; tool_call_id
// and name when set.
func MessageValues(msgs []Message) ([]any, error) {
	out := make([]any, len(msgs))
	for i, m := range msgs {
		d := jinja.NewDict()
		d.Set("role", m.Role)
		d.Set("content", m.Content)
		if m.ReasoningContent != "" {
			d.Set("reasoning_content", m.ReasoningContent)
			d.Set("thinking", m.ReasoningContent)
		}
		if len(m.ToolCalls) > 0 {
			calls := make([]any, len(m.ToolCalls))
			for j, tc := range m.ToolCalls {
				c := jinja.NewDict()
				if tc.ID != "" {
					c.Set("id", tc.ID)
				}
				c.Set("type", "function")
				fn := jinja.NewDict()
				fn.Set("name", tc.Name)
				var args any = tc.Arguments
				if v, err := jinja.FromJSON([]byte(tc.Arguments)); err == nil {
					args = v
				}
				fn.Set("arguments", args)
				c.Set("function", fn)
				calls[j] = c
			}
			d.Set("tool_calls", calls)
		}
		if m.ToolCallID != "" {
			d.Set("tool_call_id", m.ToolCallID)
		}
		if m.Name != "" {
			d.Set("name", m.Name)
		}
		out[i] = d
	}
	return out, nil
}
