package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/engine/enginetest"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model/archs"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/sample"
	"github.com/stretchr/testify/require"
)

func load(t *testing.T, dir string) *engine.Engine {
	t.Helper()
	e, err := engine.Load(t.Context(), dir, engine.Options{Loaders: archs.Loaders(), CacheType: kernels.F32, PrefillChunk: 16})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func streamed(toks []engine.Token) string {
	var b strings.Builder
	for _, tk := range toks {
		b.WriteString(tk.Text)
	}
	return b.String()
}

// The engine's greedy decoding (chunked prefill, cache, sampler) gives the
// reference continuation.
func TestGreedyMatchesReference(t *testing.T) {
	for _, name := range []string{"qwen3_moe", "qwen3_moe_mlx4", "qwen3_moe_nonorm"} {
		fx, err := fixture.Load(name)
		require.NoError(t, err)
		e := load(t, enginetest.Checkpoint(t, name, nil))
		toks, sum := enginetest.Generate(t, e, &engine.Request{PromptTokens: fx.InputIDs, MaxTokens: len(fx.Greedy), Sampling: sample.Options{Logprobs: true}})
		require.Equal(t, fx.Greedy, sum.Tokens, name)
		require.Equal(t, engine.FinishLength, sum.FinishReason)
		require.Equal(t, len(fx.Greedy)-1, sum.DecodeSteps)
		require.Positive(t, sum.PrefillTokensPerSecond())
		tok, err := e.Tokenizer()
		require.NoError(t, err)
		require.Equal(t, tok.Decode(fx.Greedy, true), sum.Text)
		require.Equal(t, sum.Text, streamed(toks), "streamed text adds up to the summary")
		for i, tk := range toks[:len(toks)-1] {
			require.Equal(t, fx.Greedy[i], tk.ID)
			require.Negative(t, tk.Logprob, "a logprob was computed")
		}
	}
}

func TestStopString(t *testing.T) {
	fx, err := fixture.Load("qwen3_moe")
	require.NoError(t, err)
	e := load(t, enginetest.Checkpoint(t, "qwen3_moe", nil))
	tok, _ := e.Tokenizer()
	full := tok.Decode(fx.Greedy, true)
	// A stop string from the middle of the reference text.
	stop := tok.Decode(fx.Greedy[6:8], true)
	i := strings.Index(full, stop)
	require.Positive(t, i)
	toks, sum := enginetest.Generate(t, e, &engine.Request{PromptTokens: fx.InputIDs, MaxTokens: 16, Stop: []string{"never appears \x00", stop}})
	require.Equal(t, engine.FinishStop, sum.FinishReason)
	require.Equal(t, full[:i], sum.Text)
	require.Equal(t, sum.Text, streamed(toks))
	require.Less(t, len(sum.Tokens), 16)
}

func TestEOSStops(t *testing.T) {
	fx, err := fixture.Load("qwen3_moe")
	require.NoError(t, err)
	eos := fx.Greedy[3]
	e := load(t, enginetest.Checkpoint(t, "qwen3_moe", map[string]any{"eos_token_id": []int32{999, eos}}))
	_, sum := enginetest.Generate(t, e, &engine.Request{PromptTokens: fx.InputIDs, MaxTokens: 16})
	require.Equal(t, engine.FinishStop, sum.FinishReason)
	require.Equal(t, fx.Greedy[:3], sum.Tokens, "the end-of-sequence id is not part of the output")
}

func TestTextAndChatPrompts(t *testing.T) {
	e := load(t, enginetest.Checkpoint(t, "qwen3_moe", nil))
	tok, _ := e.Tokenizer()
	req := &engine.Request{Prompt: "def reverse(s):", MaxTokens: 5}
	ids, err := e.Prompt(req)
	require.NoError(t, err)
	require.Equal(t, tok.Encode("def reverse(s):", true), ids)
	_, sum := enginetest.Generate(t, e, req)
	require.Equal(t, ids, sum.PromptTokens)
	require.Len(t, sum.Tokens, 5)

	chatReq := &engine.Request{Messages: []chat.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hello"}}, MaxTokens: 3}
	ids, err = e.Prompt(chatReq)
	require.NoError(t, err)
	require.Equal(t, tok.Encode("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", false), ids)
	_, imStart, _ := enginetest.Specials(e.Info().Vocab)
	require.Equal(t, imStart, ids[0])

	// Sampling with a seed is reproducible.
	seed := uint64(3)
	sreq := &engine.Request{Prompt: "x", MaxTokens: 8, Sampling: sample.Options{Temperature: 1, TopP: 0.9, Seed: &seed}}
	_, a := enginetest.Generate(t, e, sreq)
	_, b := enginetest.Generate(t, e, sreq)
	require.Equal(t, a.Tokens, b.Tokens)
}

func TestRequestErrors(t *testing.T) {
	e := load(t, enginetest.Checkpoint(t, "qwen3_moe", nil))
	for name, req := range map[string]*engine.Request{
		"no prompt":       {MaxTokens: 1},
		"two prompts":     {Prompt: "a", PromptTokens: []int32{1}, MaxTokens: 1},
		"zero max tokens": {Prompt: "a"},
		"beyond context":  {Prompt: "a", MaxTokens: 100000},
		"bad sampling":    {Prompt: "a", MaxTokens: 1, Sampling: sample.Options{TopP: 2}},
		"id beyond vocab": {PromptTokens: []int32{1, int32(e.Info().Vocab) + 5}, MaxTokens: 1},
		"negative id":     {PromptTokens: []int32{-1}, MaxTokens: 1},
	} {
		err := e.Generate(t.Context(), req, func(engine.Token) error { return nil })
		require.ErrorIs(t, err, fault.ErrUsage, name)
	}
	err := e.Generate(t.Context(), &engine.Request{PromptTokens: []int32{int32(e.Info().Vocab)}, MaxTokens: 1}, func(engine.Token) error { return nil })
	v := e.Info().Vocab
	require.ErrorContains(t, err, fmt.Sprintf("prompt token %d (position 0) is outside the model's vocabulary of %d ids", v, v))
}

func TestCancel(t *testing.T) {
	e := load(t, enginetest.Checkpoint(t, "qwen3_moe", nil))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	n := 0
	err := e.Generate(ctx, &engine.Request{Prompt: "abc", MaxTokens: 50}, func(engine.Token) error {
		n++
		if n == 3 {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 3, n)
	stop := errors.New("client went away")
	err = e.Generate(t.Context(), &engine.Request{Prompt: "abc", MaxTokens: 50}, func(engine.Token) error { return stop })
	require.ErrorIs(t, err, stop)
}

// Checkpoints this build cannot run are refused with mach check's reasons.
func TestRefusals(t *testing.T) {
	// A registered architecture whose forward pass a build lacks (every
	// one is implemented now: a registry that says otherwise stands in).
	fx, err := fixture.Load("deepseek_v4")
	require.NoError(t, err)
	var all []registry.Arch
	for _, a := range registry.Default().All() {
		if a.ModelType == "deepseek_v4" {
			a.Support = registry.Support{}
		}
		all = append(all, a)
	}
	reg, err := registry.New(all...)
	require.NoError(t, err)
	_, err = engine.Load(t.Context(), fx.Dir, engine.Options{Loaders: archs.Loaders(), Registry: reg})
	require.ErrorIs(t, err, fault.ErrUnsupported)
	require.Contains(t, err.Error(), "deepseek_v4 forward pass not implemented in this build")

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type": "llama", "hidden_size": 8}`), 0o644))
	_, err = engine.Load(t.Context(), dir, engine.Options{Loaders: archs.Loaders()})
	require.ErrorIs(t, err, fault.ErrUnsupported)
	require.Contains(t, err.Error(), `unsupported model_type "llama"`)

	noWeights := enginetest.TokenizerOnly(t, "qwen3_moe")
	_, err = engine.Load(t.Context(), noWeights, engine.Options{Loaders: archs.Loaders()})
	require.ErrorIs(t, err, fault.ErrIO)
	require.Contains(t, err.Error(), "no safetensors weights")

	// The prompter still works there: it loads no weights.
	ids, err := engine.NewPrompter(noWeights).Prompt(&engine.Request{Prompt: "hi"})
	require.NoError(t, err)
	require.NotEmpty(t, ids)
}

func TestNoTokenizer(t *testing.T) {
	fx, err := fixture.Load("qwen3_moe")
	require.NoError(t, err)
	e := load(t, fx.Dir)
	err = e.Generate(t.Context(), &engine.Request{Prompt: "hi", MaxTokens: 1}, func(engine.Token) error { return nil })
	require.ErrorIs(t, err, fault.ErrIO)
	require.Contains(t, err.Error(), "--prompt-tokens")
	_, sum := enginetest.Generate(t, e, &engine.Request{PromptTokens: fx.InputIDs, MaxTokens: 4})
	require.Equal(t, fx.Greedy[:4], sum.Tokens)
	require.Empty(t, sum.Text, "no tokenizer, no text")
}
