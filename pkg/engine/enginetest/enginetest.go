// Package enginetest builds small checkpoints for engine and command tests:
// a reference fixture's weights with a tiny byte-level BPE tokenizer (the
// Qwen pre-tokenizer, as many ids as the fixture's vocabulary so every id
// the model emits decodes)
// and a ChatML chat template; Generate runs a request to its summary.
package enginetest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/stretchr/testify/require"
)

// Specials returns the ids of the tiny tokenizer's special tokens for a
// vocabulary of vocab ids: <|endoftext|>, <|im_start|>, <|im_end|> are the
// last three.
func Specials(vocab int) (endOfText, imStart, imEnd int32) {
	return int32(vocab - 3), int32(vocab - 2), int32(vocab - 1)
}

// ChatTemplate is the ChatML template the tiny checkpoint carries.
const ChatTemplate = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// qwenSplit is Qwen's pre-tokenizer regex.
const qwenSplit = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// byteChars is GPT-2's byte-to-unicode table: printable bytes map to
// themselves, the rest to U+0100 onwards.
func byteChars() []string {
	var keep []int
	for b := '!'; b <= '~'; b++ {
		keep = append(keep, int(b))
	}
	for b := 0xA1; b <= 0xAC; b++ {
		keep = append(keep, b)
	}
	for b := 0xAE; b <= 0xFF; b++ {
		keep = append(keep, b)
	}
	out := make([]string, 256)
	in := map[int]bool{}
	for _, b := range keep {
		out[b] = string(rune(b))
		in[b] = true
	}
	n := 0
	for b := 0; b < 256; b++ {
		if !in[b] {
			out[b] = string(rune(256 + n))
			n++
		}
	}
	return out
}

// TokenizerJSON returns a tiny tokenizer.json of vocab ids (256 bytes,
// then merges, then three special tokens); vocab is at most 450.
func TokenizerJSON(size int) []byte {
	chars := byteChars()
	vocab := map[string]int{}
	for b, c := range chars {
		vocab[c] = b
	}
	var merges []string
	add := func(a, b string) {
		if len(vocab) >= size-3 {
			return
		}
		if _, dup := vocab[a+b]; dup {
			return
		}
		merges = append(merges, a+" "+b)
		vocab[a+b] = len(vocab)
	}
	space := chars[' ']
	for c := 'a'; c <= 'z'; c++ {
		add(space, string(c))
	}
	for _, first := range "etrsnaoi" {
		for c := 'a'; c <= 'z'; c++ {
			add(string(first), string(c))
		}
	}
	special := func(id int, s string) map[string]any {
		return map[string]any{"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
	}
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
	tj := map[string]any{
		"version":      "1.0",
		"truncation":   nil,
		"padding":      nil,
		"added_tokens": []any{special(size-3, "<|endoftext|>"), special(size-2, "<|im_start|>"), special(size-1, "<|im_end|>")},
		"normalizer":   map[string]any{"type": "NFC"},
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": qwenSplit}, "behavior": "Isolated", "invert": false},
			byteLevel,
		}},
		"post_processor": byteLevel,
		"decoder":        byteLevel,
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "",
			"end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
			"vocab": vocab, "merges": merges},
	}
	b, err := json.Marshal(tj)
	if err != nil {
		panic(err)
	}
	return b
}

// Checkpoint copies the fixture's config, generation config and weights
// into a temporary directory, adds the tiny tokenizer and chat template,
// and returns the directory. gen, when not nil, replaces
// generation_config.json.
func Checkpoint(t testing.TB, name string, gen map[string]any) string {
	t.Helper()
	fx, err := fixture.Load(name)
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for _, f := range []string{"config.json", "generation_config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(fx.Dir, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	if gen != nil {
		b, err := json.Marshal(gen)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "generation_config.json"), b, 0o644))
	}
	WriteTokenizer(t, dir, fx.Vocab)
	return dir
}

// WriteTokenizer writes the tiny tokenizer of vocab ids and a
// tokenizer_config.json with the ChatML chat template into dir.
func WriteTokenizer(t testing.TB, dir string, vocab int) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), TokenizerJSON(vocab), 0o644))
	tc, err := json.Marshal(map[string]any{"chat_template": ChatTemplate, "eos_token": "<|im_end|>", "bos_token": nil})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), tc, 0o644))
}

// Generate runs req on e and returns the streamed tokens and the summary,
// requiring the generation to succeed and to end with the summary.
func Generate(t testing.TB, e *engine.Engine, req *engine.Request) ([]engine.Token, *engine.Summary) {
	t.Helper()
	var toks []engine.Token
	var sum *engine.Summary
	err := e.Generate(t.Context(), req, func(tk engine.Token) error {
		require.Nil(t, sum, "no token after the summary")
		if tk.Final != nil {
			sum = tk.Final
		}
		toks = append(toks, tk)
		return nil
	})
	require.NoError(t, err)
	require.NotNil(t, sum)
	return toks, sum
}

// TokenizerOnly writes a directory with only config.json (of the fixture)
// and the tokenizer files, as --tokenize-only must accept.
func TokenizerOnly(t testing.TB, name string) string {
	t.Helper()
	dir := Checkpoint(t, name, nil)
	require.NoError(t, os.Remove(filepath.Join(dir, "model.safetensors")))
	return dir
}

// IDs renders ids as --prompt-tokens takes them.
func IDs(ids []int32) string {
	s := ""
	for i, id := range ids {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprint(id)
	}
	return s
}
