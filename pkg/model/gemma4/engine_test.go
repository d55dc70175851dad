package gemma4_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/engine/enginetest"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model/archs"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/stretchr/testify/require"
)

// repoTestdata returns the repository's testdata directory.
func repoTestdata(t *testing.T) string {
	t.Helper()
	d, err := fixture.Dir() // testdata/models
	require.NoError(t, err)
	return filepath.Dir(d)
}

// expectedRendering returns the reference rendering of a conversation by
// the Gemma 4 chat template (testdata/chat, made with transformers'
// apply_chat_template).
func expectedRendering(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoTestdata(t), "chat", "gemma4.expected.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c struct {
			Name string  `json:"name"`
			Text *string `json:"text"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &c))
		if c.Name == name && c.Text != nil {
			return *c.Text
		}
	}
	require.NoError(t, sc.Err())
	t.Fatalf("no reference rendering %q", name)
	return ""
}

// A chat request to the engine on a gemma4 checkpoint renders Gemma 4's
// chat template through the chat package exactly as transformers does,
// and generates what the model generates for those ids. The checkpoint is
// the gemma4 fixture with the engine tests' tiny byte-level tokenizer (so
// every id stays inside the fixture's 320-token vocabulary) and the Gemma 4
// template.
func TestChatThroughEngine(t *testing.T) {
	dir := enginetest.Checkpoint(t, "gemma4", map[string]any{"eos_token_id": []int{}})
	tmpl, err := os.ReadFile(filepath.Join(repoTestdata(t), "chat", "templates", "gemma4.jinja"))
	require.NoError(t, err)
	tc, err := json.Marshal(map[string]any{"chat_template": string(tmpl), "bos_token": "<bos>", "eos_token": "<eos>"})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), tc, 0o644))
	// Gemma's <bos> and <eos> take the places of the tiny tokenizer's
	// first two special tokens.
	var tj map[string]any
	require.NoError(t, json.Unmarshal(enginetest.TokenizerJSON(320), &tj))
	added := tj["added_tokens"].([]any)
	added[0].(map[string]any)["content"] = "<bos>"
	added[1].(map[string]any)["content"] = "<eos>"
	raw, err := json.Marshal(tj)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), raw, 0o644))

	b := cpu.New(cpu.Options{})
	defer b.Close()
	e, err := engine.Load(t.Context(), dir, engine.Options{Loaders: archs.Loaders(), Backend: b, CacheType: kernels.F32})
	require.NoError(t, err)
	defer e.Close()
	require.Equal(t, "gemma4", e.Info().ModelType)

	const n = 6
	_, sum := enginetest.Generate(t, e, &engine.Request{Messages: []chat.Message{{Role: "user", Content: "Hello!"}}, MaxTokens: n})

	tok, err := e.Tokenizer()
	require.NoError(t, err)
	want := expectedRendering(t, "user_only")
	require.Equal(t, "<bos><|turn>user\nHello!<turn|>\n<|turn>model\n", want[:len("<bos><|turn>user\nHello!<turn|>\n<|turn>model\n")])
	require.Equal(t, tok.Encode(want, false), sum.PromptTokens, "prompt ids are the reference rendering's")

	// The same ids through the model directly, greedily.
	greedy, _ := modeltest.DecodeAlone(t, e.Model(), sum.PromptTokens, n)
	require.Equal(t, greedy, sum.Tokens)
	require.Equal(t, engine.FinishLength, sum.FinishReason)
}
