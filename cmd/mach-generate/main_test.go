package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/engine/enginetest"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/hub/hubtest"
	"github.com/maniac-ai/mach/pkg/model/archs"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/sidecar/export"
	"github.com/maniac-ai/mach/pkg/tokenizer"
	"github.com/stretchr/testify/require"
)

type env map[string]string

func runApp(t *testing.T, e env, stdin string, args ...string) (string, string, int) {
	t.Helper()
	d := deps{registry: registry.Default(), loaders: archs.Loaders(), storeLoaders: archs.StoreLoaders(), getenv: func(k string) string { return e[k] }, stdin: strings.NewReader(stdin)}
	app := newApp(d)
	var out, errb bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errb
	argv := cliapp.Interspersed(app, append([]string{"mach-generate"}, args...))
	code := cliapp.Run(context.Background(), app, argv, &errb)
	return out.String(), errb.String(), code
}

func TestSeedExampleShape(t *testing.T) {
	// The seed's example, on a tiny checkpoint with a tokenizer.
	dir := enginetest.Checkpoint(t, "qwen3_moe", nil)
	out, stderr, code := runApp(t, nil, "", dir, "--prompt", "def reverse(s):", "--max-tokens", "64", "--temperature", "0.0")
	require.Equal(t, 0, code, stderr)
	require.NotEmpty(t, strings.TrimSpace(out))
	// The same run as JSON gives the same text.
	js, stderr, code := runApp(t, nil, "", dir, "--prompt", "def reverse(s):", "--max-tokens", "64", "--temperature", "0", "--json")
	require.Equal(t, 0, code, stderr)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(js), &res))
	require.Equal(t, res["text"].(string)+"\n", out)
	for _, k := range []string{"prompt_tokens", "tokens", "text", "finish_reason", "timings", "peak_rss_bytes"} {
		require.Contains(t, res, k)
	}
	for _, k := range []string{"load_s", "prefill_tokens_per_s", "decode_tokens_per_s"} {
		require.Contains(t, res["timings"], k)
	}
	require.Equal(t, "length", res["finish_reason"])
	require.Len(t, res["tokens"], 64)
	require.Positive(t, res["peak_rss_bytes"])
}

func TestGreedyTokensJSON(t *testing.T) {
	for _, name := range []string{"qwen3_moe_mlx8", "qwen3_5_moe", "qwen3_5_moe_mlx4"} {
		fx, err := fixture.Load(name)
		require.NoError(t, err)
		out, stderr, code := runApp(t, nil, "", fx.Dir, "--prompt-tokens", enginetest.IDs(fx.InputIDs),
			"--max-tokens", "16", "--temperature", "0", "--kv-cache", "f32", "--json")
		require.Equal(t, 0, code, "%s: %s", name, stderr)
		var res struct {
			PromptTokens []int32 `json:"prompt_tokens"`
			Tokens       []int32 `json:"tokens"`
			Text         string  `json:"text"`
			FinishReason string  `json:"finish_reason"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &res))
		require.Equal(t, fx.InputIDs, res.PromptTokens, name)
		// The fixtures' end-of-sequence id is 2 (generation_config.json);
		// generation stops there.
		want, finish := fx.Greedy, "length"
		if i := slices.Index(want, 2); i >= 0 {
			want, finish = want[:i], "stop"
		}
		require.Equal(t, want, res.Tokens, name)
		require.Empty(t, res.Text, "no tokenizer in the fixture directory")
		require.Equal(t, finish, res.FinishReason, name)
	}
}

func TestVerboseAndStop(t *testing.T) {
	dir := enginetest.Checkpoint(t, "qwen3_moe", nil)
	full, _, code := runApp(t, nil, "", dir, "--prompt", "abc", "--max-tokens", "12", "--temperature", "0")
	require.Equal(t, 0, code)
	stop := strings.TrimSuffix(full, "\n")[4:6]
	out, stderr, code := runApp(t, nil, "", dir, "--prompt", "abc", "--max-tokens", "12", "--temperature", "0", "--stop", stop, "--verbose")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, full[:strings.Index(full, stop)]+"\n", out)
	for _, s := range []string{"load:", "prompt:", "generation:", "(stop)", "peak RSS:"} {
		require.Contains(t, stderr, s)
	}
}

func TestTokenizeOnly(t *testing.T) {
	dir := enginetest.TokenizerOnly(t, "qwen3_moe")
	tok, err := tokenizer.Load(dir)
	require.NoError(t, err)
	out, stderr, code := runApp(t, nil, "", dir, "--prompt", "def reverse(s):", "--tokenize-only")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, enginetest.IDs(tok.Encode("def reverse(s):", true))+"\n", out)

	out, stderr, code = runApp(t, nil, "", dir, "--chat", "--system", "Be brief.", "--prompt", "Hello", "--tokenize-only", "--json")
	require.Equal(t, 0, code, stderr)
	var res struct {
		PromptTokens []int32 `json:"prompt_tokens"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, tok.Encode("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", false), res.PromptTokens)

	// --prompt-file - reads stdin.
	out, _, code = runApp(t, nil, "from stdin", dir, "--prompt-file", "-", "--tokenize-only")
	require.Equal(t, 0, code)
	require.Equal(t, enginetest.IDs(tok.Encode("from stdin", true))+"\n", out)
}

func TestRepoIDFromCache(t *testing.T) {
	fx, err := fixture.Load("qwen3_moe")
	require.NoError(t, err)
	hf := t.TempDir()
	snap := filepath.Join(hf, "models--tiny--qwen3", "snapshots", "abc123")
	require.NoError(t, os.MkdirAll(snap, 0o755))
	for _, f := range []string{"config.json", "generation_config.json", "model.safetensors"} {
		require.NoError(t, os.Symlink(filepath.Join(fx.Dir, f), filepath.Join(snap, f)))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(hf, "models--tiny--qwen3", "refs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(hf, "models--tiny--qwen3", "refs", "main"), []byte("abc123"), 0o644))
	e := env{"HF_HUB_CACHE": hf, "MACH_CACHE_DIR": t.TempDir()}
	out, stderr, code := runApp(t, e, "", "tiny/qwen3", "--prompt-tokens", "5,6,7", "--max-tokens", "2", "--temperature", "0", "--json")
	require.Equal(t, 0, code, stderr)
	var res struct {
		PromptTokens []int32 `json:"prompt_tokens"`
		Tokens       []int32 `json:"tokens"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, []int32{5, 6, 7}, res.PromptTokens)
	require.NotEmpty(t, res.Tokens)

	_, stderr, code = runApp(t, e, "", "tiny/absent", "--prompt-tokens", "5", "--max-tokens", "2", "--local-only")
	require.Equal(t, cliapp.ExitIO, code)
	require.Contains(t, stderr, "not in the model caches")
	e["HF_HUB_OFFLINE"] = "1"
	_, stderr, code = runApp(t, e, "", "tiny/absent", "--prompt-tokens", "5", "--max-tokens", "2")
	require.Equal(t, cliapp.ExitIO, code)
	require.Contains(t, stderr, "HF_HUB_OFFLINE=1")
}

// TestRepoIDDownload: a repo id that is not cached is downloaded from the
// hub into the Hugging Face cache, then used from there without a request.
func TestRepoIDDownload(t *testing.T) {
	srv := hubtest.New(t)
	srv.AddDir(t, "tiny/qwen3", enginetest.Checkpoint(t, "qwen3_moe", nil))
	srv.AddFile("tiny/qwen3", "README.md", []byte("never downloaded"))
	hf := t.TempDir()
	e := env{"HF_HUB_CACHE": hf, "MACH_CACHE_DIR": t.TempDir(), "HF_ENDPOINT": srv.URL}
	out, stderr, code := runApp(t, e, "", "tiny/qwen3", "--prompt", "hello", "--max-tokens", "2", "--json")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, `"finish_reason"`)
	for _, r := range srv.Requests() {
		require.NotContains(t, r, "README.md")
	}
	snap := filepath.Join(hf, "models--tiny--qwen3", "snapshots", hubtest.Commit)
	for _, f := range []string{"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} {
		_, err := os.Readlink(filepath.Join(snap, f))
		require.NoError(t, err, "%s is linked into the snapshot", f)
	}
	srv.Reset()
	_, stderr, code = runApp(t, e, "", "tiny/qwen3", "--prompt", "hello", "--max-tokens", "2", "--json")
	require.Equal(t, 0, code, stderr)
	require.Empty(t, srv.Requests(), "the second run uses the cache")
}

func TestRefusalsAndUsage(t *testing.T) {
	dir := enginetest.Checkpoint(t, "qwen3_moe", nil)
	other, err := fixture.Load("deepseek_v4")
	require.NoError(t, err)
	unknown := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(unknown, "config.json"), []byte(`{"model_type": "llama", "hidden_size": 8}`), 0o644))
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no prompt", []string{dir}, cliapp.ExitUsage, "no prompt"},
		{"two prompts", []string{dir, "--prompt", "x", "--prompt-tokens", "1"}, cliapp.ExitUsage, "only one of"},
		{"chat with ids", []string{dir, "--chat", "--prompt-tokens", "1"}, cliapp.ExitUsage, "--chat"},
		{"system without chat", []string{dir, "--prompt", "x", "--system", "s"}, cliapp.ExitUsage, "--system needs --chat"},
		{"temperature", []string{dir, "--prompt", "x", "--temperature", "-1"}, cliapp.ExitUsage, "--temperature"},
		{"top-p", []string{dir, "--prompt", "x", "--top-p", "0"}, cliapp.ExitUsage, "--top-p"},
		{"min-p", []string{dir, "--prompt", "x", "--min-p", "1"}, cliapp.ExitUsage, "--min-p"},
		{"max-tokens", []string{dir, "--prompt", "x", "--max-tokens", "0"}, cliapp.ExitUsage, "--max-tokens"},
		{"bad ids", []string{dir, "--prompt-tokens", "1,x"}, cliapp.ExitUsage, "not a token id"},
		{"bad kv", []string{dir, "--prompt", "x", "--kv-cache", "q8"}, cliapp.ExitUsage, "--kv-cache"},
		{"unknown flag", []string{dir, "--prompt", "x", "--bogus"}, cliapp.ExitUsage, "bogus"},
		{"streaming without sidecar", []string{dir, "--prompt", "x", "--streaming"}, cliapp.ExitIO, "needs expert_sidecar/ (mach-export-sidecar)"},
		{"cache without streaming", []string{dir, "--prompt", "x", "--expert-cache-gb", "1"}, cliapp.ExitUsage, "with --streaming"},
		{"policy without streaming", []string{dir, "--prompt", "x", "--expert-policy", "lru"}, cliapp.ExitUsage, "need --streaming"},
		{"speculate without streaming", []string{dir, "--prompt", "x", "--expert-speculate"}, cliapp.ExitUsage, "need --streaming"},
		{"bad policy", []string{dir, "--prompt", "x", "--streaming", "--expert-policy", "mru"}, cliapp.ExitUsage, "unknown eviction policy"},
		{"unsupported arch", []string{unknown, "--prompt-tokens", "1"}, cliapp.ExitNo, `unsupported model_type "llama"`},
		{"missing dir", []string{"./no/such/dir", "--prompt", "x"}, cliapp.ExitIO, "no such directory"},
		{"context", []string{dir, "--prompt", "x", "--max-tokens", "100000"}, cliapp.ExitUsage, "exceeds the model's context"},
		{"no tokenizer", []string{other.Dir[:len(other.Dir)-len("deepseek_v4")] + "qwen3_moe", "--prompt", "x"}, cliapp.ExitIO, "--prompt-tokens"},
	}
	for _, tc := range tests {
		_, stderr, code := runApp(t, nil, "", tc.args...)
		require.Equal(t, tc.code, code, "%s: %s", tc.name, stderr)
		require.Contains(t, stderr, tc.msg, tc.name)
	}
}

func TestHelp(t *testing.T) {
	out, _, code := runApp(t, nil, "", "--help")
	require.Equal(t, 0, code)
	for _, s := range []string{"EXAMPLES:", "--prompt-tokens", "--tokenize-only", "--json", "EXIT STATUS:", "--temperature 0.0"} {
		require.Contains(t, out, s)
	}
}

// --streaming serves the experts from expert_sidecar/ with the same tokens
// as resident serving, and reports the expert cache in the JSON timings.
func TestStreaming(t *testing.T) {
	fx, err := fixture.Load("qwen3_moe_mlx4")
	require.NoError(t, err)
	dir := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors", "generation_config.json"} {
		b, err := os.ReadFile(filepath.Join(fx.Dir, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	_, err = export.Run(t.Context(), export.Options{Checkpoint: dir})
	require.NoError(t, err)
	args := []string{dir, "--prompt-tokens", enginetest.IDs(fx.InputIDs), "--max-tokens", "16", "--temperature", "0", "--kv-cache", "f32", "--json"}
	out, stderr, code := runApp(t, nil, "", append(args, "--streaming", "--expert-cache-gb", "0.00001", "--expert-policy", "layer-lru", "--expert-speculate")...)
	require.Equal(t, 0, code, stderr)
	var res struct {
		Tokens  []int32        `json:"tokens"`
		Timings map[string]any `json:"timings"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, fx.Greedy, res.Tokens)
	for _, k := range []string{"expert_cache_hit_rate", "expert_bytes_read", "expert_decode_hit_rate", "expert_bytes_read_per_token",
		"expert_stall_ms_per_token", "expert_read_latency_ms", "expert_cache_bytes", "expert_direct_io"} {
		require.Contains(t, res.Timings, k)
	}
	hr := res.Timings["expert_cache_hit_rate"].(float64)
	require.True(t, hr > 0 && hr < 1, "a one-layer cache hits some and misses some: %v", hr)
	require.Positive(t, res.Timings["expert_bytes_read"])
	require.Equal(t, float64(8*8192), res.Timings["expert_cache_bytes"], "raised to one layer of 8 experts")

	// Resident JSON has no expert keys.
	out, stderr, code = runApp(t, nil, "", args...)
	require.Equal(t, 0, code, stderr)
	require.NotContains(t, out, "expert_cache_hit_rate")

	// --verbose prints the expert line.
	_, stderr, code = runApp(t, nil, "", dir, "--prompt-tokens", "1,2,3", "--max-tokens", "4", "--streaming", "--verbose")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stderr, "experts:    streamed, adaptive (following ")

	// A corrupted expert fails with the layer and expert named (exit 4).
	p := filepath.Join(dir, "expert_sidecar", "layer_00.bin")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	for e := 0; e < 8; e++ {
		data[e*8192+3] ^= 0xff
	}
	require.NoError(t, os.WriteFile(p, data, 0o644))
	_, stderr, code = runApp(t, nil, "", append(args, "--streaming")...)
	require.Equal(t, cliapp.ExitIO, code, stderr)
	require.Contains(t, stderr, "corrupted expert sidecar: layer 0 expert")
}
