package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/stretchr/testify/require"
)

// The default model (models/default) and transformers' greedy outputs on it.
var (
	defaultModelDir = filepath.Join("..", "..", "models", "default")
	defaultRefFile  = filepath.Join("..", "..", "testdata", "default-model", "reference.json")
)

type greedyRef struct {
	Name       string  `json:"name"`
	PromptText string  `json:"prompt_text"`
	PromptIDs  []int32 `json:"prompt_ids"`
	OutputIDs  []int32 `json:"output_ids"`
	OutputText string  `json:"output_text"`
	// Messages is the chat prompt's conversation (one user turn).
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
}

func loadGreedyRef(t *testing.T, name string) greedyRef {
	t.Helper()
	b, err := os.ReadFile(defaultRefFile)
	require.NoError(t, err)
	var r struct {
		Greedy []greedyRef `json:"greedy"`
	}
	require.NoError(t, json.Unmarshal(b, &r))
	for _, g := range r.Greedy {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("%s: no greedy prompt %q", defaultRefFile, name)
	return greedyRef{}
}

// TestDefaultModel: without MODEL, mach-generate runs the default model
// (here through $MACH_DEFAULT_MODEL), says so at info level, and its greedy
// output is transformers'.
func TestDefaultModel(t *testing.T) {
	dir, err := filepath.Abs(defaultModelDir)
	require.NoError(t, err)
	g := loadGreedyRef(t, "code")
	out, stderr, code := runApp(t, env{"MACH_DEFAULT_MODEL": dir}, "", "--log-level", "info",
		"--prompt", g.PromptText, "--max-tokens", "64", "--temperature", "0", "--kv-cache", "f32", "--json")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stderr, "using the default model")
	require.Contains(t, stderr, dir)
	var res struct {
		PromptTokens []int32 `json:"prompt_tokens"`
		Tokens       []int32 `json:"tokens"`
		Text         string  `json:"text"`
		ModelType    string  `json:"model_type"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, "qwen3_moe", res.ModelType)
	require.Equal(t, g.PromptIDs, res.PromptTokens)
	require.Equal(t, g.OutputIDs, res.Tokens)
	require.Equal(t, g.OutputText, res.Text)
}

// TestDefaultModelFromCheckout: with nothing configured, go test (whose
// binary lives in a temporary directory) finds the checkout's models/default
// from the working directory; --tokenize-only keeps it cheap.
func TestDefaultModelFromCheckout(t *testing.T) {
	dir, err := filepath.Abs(defaultModelDir)
	require.NoError(t, err)
	g := loadGreedyRef(t, "chat")
	require.Len(t, g.Messages, 1)
	require.Equal(t, "user", g.Messages[0].Role)
	out, stderr, code := runApp(t, nil, "", "--log-level", "info", "--chat",
		"--prompt", g.Messages[0].Content, "--tokenize-only", "--json")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stderr, dir)
	var res struct {
		PromptTokens []int32 `json:"prompt_tokens"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, g.PromptIDs, res.PromptTokens)
}

// TestDefaultModelMissing: a $MACH_DEFAULT_MODEL that points nowhere is an
// input/output error naming the variable, never a silent fall-back.
func TestDefaultModelMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, stderr, code := runApp(t, env{"MACH_DEFAULT_MODEL": missing}, "", "--prompt", "x", "--max-tokens", "1")
	require.Equal(t, cliapp.ExitIO, code, stderr)
	require.Contains(t, stderr, "no MODEL given")
	require.Contains(t, stderr, "$MACH_DEFAULT_MODEL="+missing)
}
