package chat_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/stretchr/testify/require"
)

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
}

func TestLoadSources(t *testing.T) {
	msgs := []chat.Message{{Role: "user", Content: "hi"}}

	dir := t.TempDir()
	write(t, dir, "tokenizer_config.json", `{"bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>", "unk_token": null,
		"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}]}`)
	tpl, err := chat.Load(dir)
	require.NoError(t, err)
	out, err := tpl.Render(msgs, chat.Options{})
	require.NoError(t, err)
	require.Equal(t, "<s>hi</s>", out)
	require.NotContains(t, tpl.Special, "unk_token")

	// chat_template.json wins over tokenizer_config.json, chat_template.jinja over both.
	write(t, dir, "chat_template.json", `{"chat_template": "json:{{ messages[0].content }}"}`)
	tpl, err = chat.Load(dir)
	require.NoError(t, err)
	out, _ = tpl.Render(msgs, chat.Options{})
	require.Equal(t, "json:hi", out)
	write(t, dir, "chat_template.jinja", "jinja:{{ messages[0].content }}\n")
	tpl, err = chat.Load(dir)
	require.NoError(t, err)
	out, _ = tpl.Render(msgs, chat.Options{})
	require.Equal(t, "jinja:hi", out)
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := chat.Load(dir)
	require.ErrorIs(t, err, chat.ErrNoTemplate)
	require.ErrorIs(t, err, fault.ErrIO)

	write(t, dir, "tokenizer_config.json", `{"chat_template": 5}`)
	_, err = chat.Load(dir)
	require.ErrorIs(t, err, fault.ErrIO)
	require.Contains(t, err.Error(), "tokenizer_config.json")

	write(t, dir, "tokenizer_config.json", `{not json`)
	_, err = chat.Load(dir)
	require.ErrorIs(t, err, fault.ErrIO)

	write(t, dir, "tokenizer_config.json", `{"chat_template": "{% include 'x' %}"}`)
	_, err = chat.Load(dir)
	require.ErrorIs(t, err, fault.ErrUnsupported)
	require.Contains(t, err.Error(), "'include'")

	write(t, dir, "tokenizer_config.json", `{"chat_template": "{{ raise_exception('no ' ~ messages[0].role) }}"}`)
	tpl, err := chat.Load(dir)
	require.NoError(t, err)
	_, err = tpl.Render([]chat.Message{{Role: "tool"}}, chat.Options{})
	require.ErrorIs(t, err, fault.ErrUsage)
	require.Contains(t, err.Error(), "no tool")
}

func TestLoadForModelHarmonyFallback(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "tokenizer_config.json", `{"eos_token": "<|return|>"}`)
	_, err := chat.LoadForModel(dir, "qwen3_moe")
	require.ErrorIs(t, err, chat.ErrNoTemplate)
	tpl, err := chat.LoadForModel(dir, "gpt_oss")
	require.NoError(t, err)
	want, err := os.ReadFile(filepath.Join(chatDir, "templates", "gptoss.jinja"))
	require.NoError(t, err)
	require.Equal(t, string(want), tpl.Source, "built-in template drifted from the tested one")
	out, err := tpl.Render([]chat.Message{{Role: "user", Content: "hi"}}, chat.Options{AddGenerationPrompt: true, Kwargs: map[string]any{"reasoning_effort": "low"}})
	require.NoError(t, err)
	require.Contains(t, out, "Reasoning: low")
	require.Contains(t, out, "<|start|>user<|message|>hi<|end|><|start|>assistant")
}
