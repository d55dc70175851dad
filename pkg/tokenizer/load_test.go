package tokenizer

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/maniac-ai/mach/pkg/fault"
)

// tinyJSON returns a small valid byte-level BPE tokenizer.json with the given top-level keys replaced
// (a nil value deletes the key).
func tinyJSON(t testing.TB, override map[string]any) []byte {
	t.Helper()
	vocab := map[string]int{}
	for b := 0; b < 256; b++ {
		vocab[byteToStr[b]] = b
	}
	vocab["he"] = 256
	vocab["ll"] = 257
	vocab["hell"] = 258
	vocab["hello"] = 259
	vocab["Ġw"] = 260
	doc := map[string]any{
		"version":    "1.0",
		"truncation": nil,
		"padding":    nil,
		"added_tokens": []map[string]any{
			{"id": 261, "content": "<|end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
			{"id": 262, "content": "<tool>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false},
		},
		"normalizer": nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": patQwen}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
		}},
		"post_processor": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "", "end_of_word_suffix": "",
			"fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
			"vocab":  vocab,
			"merges": [][]string{{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"}},
		},
	}
	for k, v := range override {
		if v == nil {
			delete(doc, k)
			continue
		}
		doc[k] = v
	}
	data, err := json.Marshal(doc)
	require.NoError(t, err)
	return data
}

func writeDir(t testing.TB, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	}
	return dir
}

func TestTinyTokenizer(t *testing.T) {
	dir := writeDir(t, map[string][]byte{FileTokenizer: tinyJSON(t, nil)})
	tok, err := Load(dir)
	require.NoError(t, err)
	require.Equal(t, []int32{259, 260, 'o', 'r', 'l', 'd'}, tok.Encode("hello world", false))
	require.Equal(t, []int32{259, 261, 262}, tok.Encode("hello<|end|><tool>", true))
	require.Equal(t, "hello<|end|><tool>", tok.Decode([]int32{259, 261, 262}, false))
	require.Equal(t, "hello<tool>", tok.Decode([]int32{259, 261, 262}, true))
	require.Equal(t, "hello", tok.Decode([]int32{259, -1, 100000}, false), "unknown ids are skipped")
	require.Equal(t, 263, tok.VocabSize())
	id, ok := tok.TokenID("<|end|>")
	require.True(t, ok)
	require.Equal(t, int32(261), id)
	s, ok := tok.Token(258)
	require.True(t, ok)
	require.Equal(t, "hell", s)
	_, ok = tok.Token(-5)
	require.False(t, ok)
	require.True(t, tok.IsSpecial(261))
	require.False(t, tok.IsSpecial(262))
	require.False(t, tok.IsSpecial(259))
	require.Empty(t, tok.EOS())
	_, ok = tok.BOS()
	require.False(t, ok)
}

// Invalid UTF-8 is encoded as the text Python would hand to HF after bytes.decode(errors="replace").
func TestEncodeInvalidUTF8(t *testing.T) {
	dir := writeDir(t, map[string][]byte{FileTokenizer: tinyJSON(t, nil)})
	tok, err := Load(dir)
	require.NoError(t, err)
	for _, c := range []struct{ in, same string }{
		{"hell\xffo", "hell\ufffdo"},
		{"\xe2\x82 world", "\ufffd world"},
		{"\xed\xa0\x80", "\ufffd\ufffd\ufffd"},
	} {
		require.Equal(t, tok.Encode(c.same, false), tok.Encode(c.in, false), "%q", c.in)
	}
}

func TestSpecialConfig(t *testing.T) {
	base := tinyJSON(t, nil)
	for _, c := range []struct {
		name    string
		files   map[string]string
		eos     []int32
		bos     int32
		hasBOS  bool
		errText string
	}{
		{name: "none"},
		{name: "tokenizer_config strings", files: map[string]string{
			FileTokenizerConfig: `{"eos_token": "<|end|>", "bos_token": "<tool>"}`,
		}, eos: []int32{261}, bos: 262, hasBOS: true},
		{name: "AddedToken objects and null bos", files: map[string]string{
			FileTokenizerConfig: `{"eos_token": {"__type": "AddedToken", "content": "<|end|>"}, "bos_token": null}`,
		}, eos: []int32{261}},
		{name: "generation_config list wins", files: map[string]string{
			FileTokenizerConfig:  `{"eos_token": "<|end|>"}`,
			FileGenerationConfig: `{"eos_token_id": [261, 7], "bos_token_id": 3}`,
		}, eos: []int32{261, 7}, bos: 3, hasBOS: true},
		{name: "generation_config int", files: map[string]string{
			FileGenerationConfig: `{"eos_token_id": 261}`,
		}, eos: []int32{261}},
		{name: "special_tokens_map fallback", files: map[string]string{
			FileSpecialTokensMap: `{"eos_token": {"content": "<|end|>", "lstrip": false}, "bos_token": "<tool>"}`,
		}, eos: []int32{261}, bos: 262, hasBOS: true},
		{name: "unknown eos token", files: map[string]string{
			FileTokenizerConfig: `{"eos_token": "<nope>"}`,
		}, errText: `tokenizer_config.json: eos_token "<nope>" is not a token`},
		{name: "malformed generation_config", files: map[string]string{
			FileGenerationConfig: `{"eos_token_id": "x"}`,
		}, errText: "generation_config.json"},
		{name: "negative id", files: map[string]string{
			FileGenerationConfig: `{"eos_token_id": -1}`,
		}, errText: "eos_token_id -1 out of range"},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := map[string][]byte{FileTokenizer: base}
			for k, v := range c.files {
				files[k] = []byte(v)
			}
			tok, err := Load(writeDir(t, files))
			if c.errText != "" {
				require.ErrorContains(t, err, c.errText)
				require.ErrorIs(t, err, fault.ErrIO)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.eos, tok.EOS())
			bos, ok := tok.BOS()
			require.Equal(t, c.hasBOS, ok)
			if ok {
				require.Equal(t, c.bos, bos)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	model := func(edit func(m map[string]any)) map[string]any {
		var doc map[string]any
		require.NoError(t, json.Unmarshal(tinyJSON(t, nil), &doc))
		m := doc["model"].(map[string]any)
		edit(m)
		return m
	}
	for _, c := range []struct {
		name     string
		data     []byte
		class    error
		contains []string
	}{
		{"not JSON", []byte("{"), fault.ErrIO, []string{"tokenizer.json", "invalid JSON"}},
		{"trailing data", append(tinyJSON(t, nil), " x"...), fault.ErrIO, []string{"data after"}},
		{"not UTF-8", []byte("{\"version\": \"\xff\"}"), fault.ErrIO, []string{"not valid UTF-8"}},
		{"no model", tinyJSON(t, map[string]any{"model": nil}), fault.ErrIO, []string{`no "model"`}},
		{"unigram", tinyJSON(t, map[string]any{"model": map[string]any{"type": "Unigram", "vocab": []any{}}}),
			fault.ErrUnsupported, []string{`tokenizer.json: model type "Unigram" is not supported`}},
		{"wordpiece", tinyJSON(t, map[string]any{"model": map[string]any{"type": "WordPiece", "vocab": map[string]int{}}}),
			fault.ErrUnsupported, []string{`model type "WordPiece" is not supported`}},
		{"normalizer", tinyJSON(t, map[string]any{"normalizer": map[string]any{"type": "Lowercase"}}),
			fault.ErrUnsupported, []string{`normalizer type "Lowercase" is not supported`}},
		{"normalizer in sequence", tinyJSON(t, map[string]any{"normalizer": map[string]any{"type": "Sequence",
			"normalizers": []any{map[string]any{"type": "NFC"}, map[string]any{"type": "BertNormalizer"}}}}),
			fault.ErrUnsupported, []string{`normalizer type "BertNormalizer" is not supported`}},
		{"pre_tokenizer", tinyJSON(t, map[string]any{"pre_tokenizer": map[string]any{"type": "Metaspace"}}),
			fault.ErrUnsupported, []string{`pre_tokenizer type "Metaspace" is not supported`}},
		{"regex", tinyJSON(t, map[string]any{"pre_tokenizer": map[string]any{"type": "Split",
			"pattern": map[string]any{"Regex": `\w+`}, "behavior": "Isolated", "invert": false}}),
			fault.ErrUnsupported, []string{`Split regex "\\w+" is not supported`}},
		{"byte level regex", tinyJSON(t, map[string]any{"pre_tokenizer": map[string]any{"type": "ByteLevel",
			"add_prefix_space": false, "use_regex": true}}),
			fault.ErrUnsupported, []string{"use_regex=true"}},
		{"decoder", tinyJSON(t, map[string]any{"decoder": map[string]any{"type": "WordPiece"}}),
			fault.ErrUnsupported, []string{`decoder type "WordPiece" is not supported`}},
		{"post_processor", tinyJSON(t, map[string]any{"post_processor": map[string]any{"type": "BertProcessing"}}),
			fault.ErrUnsupported, []string{`post_processor type "BertProcessing" is not supported`}},
		{"truncation", tinyJSON(t, map[string]any{"truncation": map[string]any{"max_length": 5}}),
			fault.ErrUnsupported, []string{"truncation is set"}},
		{"merge token missing", tinyJSON(t, map[string]any{"model": model(func(m map[string]any) {
			m["merges"] = []string{"h e", "xyz w"}
		})}), fault.ErrIO, []string{`merges[1] "xyz" "w": token not in the vocabulary`}},
		{"merged token missing", tinyJSON(t, map[string]any{"model": model(func(m map[string]any) {
			m["merges"] = []string{"h o"}
		})}), fault.ErrIO, []string{"merged token not in the vocabulary"}},
		{"bad merge string", tinyJSON(t, map[string]any{"model": model(func(m map[string]any) {
			m["merges"] = []string{"h e l"}
		})}), fault.ErrIO, []string{"want two tokens separated by one space"}},
		{"negative id", tinyJSON(t, map[string]any{"model": model(func(m map[string]any) {
			v := maps.Clone(m["vocab"].(map[string]any))
			v["x"] = -3
			m["vocab"] = v
		})}), fault.ErrIO, []string{`vocab "x"`, "non-negative integer"}},
		{"huge id", tinyJSON(t, map[string]any{"model": model(func(m map[string]any) {
			v := maps.Clone(m["vocab"].(map[string]any))
			v["x"] = 1 << 30
			m["vocab"] = v
		})}), fault.ErrIO, []string{"integer larger than"}},
		{"added id out of range", tinyJSON(t, map[string]any{"added_tokens": []map[string]any{{"id": -1, "content": "x"}}}),
			fault.ErrIO, []string{"added_tokens[0]: id -1 out of range"}},
		{"unk not in vocab", tinyJSON(t, map[string]any{"model": model(func(m map[string]any) { m["unk_token"] = "<unk>" })}),
			fault.ErrIO, []string{`unk_token "<unk>" is not in the vocabulary`}},
		{"dropout", tinyJSON(t, map[string]any{"model": model(func(m map[string]any) { m["dropout"] = 0.1 })}),
			fault.ErrUnsupported, []string{"dropout"}},
		{"lone surrogate", []byte(`{"version": "\ud800"}`), fault.ErrIO, []string{"lone surrogate"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeDir(t, map[string][]byte{FileTokenizer: c.data})
			_, err := Load(dir)
			require.Error(t, err)
			require.ErrorIs(t, err, c.class)
			require.Contains(t, err.Error(), filepath.Join(dir, FileTokenizer))
			for _, s := range c.contains {
				require.Contains(t, err.Error(), s)
			}
		})
	}

	_, err := Load(t.TempDir())
	require.ErrorIs(t, err, fault.ErrIO)
	require.True(t, strings.Contains(err.Error(), "tokenizer.json: not found"), err.Error())
}

// TestFixtureSpecialTokens pins EOS, BOS and the vocabulary sizes of the four real tokenizers (the npm
// packages ship tokenizer.json and tokenizer_config.json, no generation_config.json).
func TestFixtureSpecialTokens(t *testing.T) {
	for _, c := range []struct {
		name      string
		eos       []int32
		bos       int32
		hasBOS    bool
		vocabSize int
		special   string
		plain     string
	}{
		{"qwen3", []int32{151645}, 0, false, 151669, "<|im_start|>", "<think>"},
		{"gptoss", []int32{200002}, 199998, true, 200019, "<|channel|>", ""},
		{"gemma3", []int32{106}, 2, true, 262145, "<start_of_turn>", "<mask>"},
		{"deepseek_v3", []int32{1}, 0, true, 128815, "<｜begin▁of▁sentence｜>", "<｜User｜>"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok := fixture(t, c.name)
			require.Equal(t, c.eos, tok.EOS())
			bos, ok := tok.BOS()
			require.Equal(t, c.hasBOS, ok)
			if ok {
				require.Equal(t, c.bos, bos)
			}
			require.Equal(t, c.vocabSize, tok.VocabSize())
			id, ok := tok.TokenID(c.special)
			require.True(t, ok)
			require.True(t, tok.IsSpecial(id))
			if c.plain != "" {
				id, ok := tok.TokenID(c.plain)
				require.True(t, ok)
				require.False(t, tok.IsSpecial(id))
			}
		})
	}
}
