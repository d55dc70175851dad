// Package servertest writes a scripted checkpoint for server tests: a real
// qwen3_moe checkpoint (config, safetensors weights, tokenizer, chat
// template) whose weights make greedy decoding follow fixed scripts, so
// that tests and the official OpenAI client can check tool calls,
// reasoning and content end to end through the real engine.
//
// How: every layer's output projections (attention o_proj, expert
// down_proj) are zero, so the final hidden state is the normalized
// embedding of the last token, and the head maps each script token's
// embedding to the next token of its script: a bigram model. Every script
// token is an added token of the tokenizer and appears once, so each has
// one successor. The chat template ends the generation prompt with a
// marker token that picks the script: a tool call when the request has
// tools, an answer after a tool result, else a greeting with reasoning.
package servertest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/maniac-ai/mach/pkg/safetensors"
)

// The scripts' texts, as a client sees them.
const (
	// ToolCall is the tool-call script: a Qwen3 JSON tool call.
	ToolName      = "get_weather"
	ToolArguments = `{"city": "Paris"}`
	// Answer follows a tool result.
	Answer = "It is sunny in Paris."
	// Reasoning and Greeting answer a plain chat.
	Reasoning = "Greeting the user."
	Greeting  = "Hello from mach!"
)

// Vocabulary layout: 256 bytes, then the special and added tokens.
const (
	vocab   = 320
	hidden  = 64
	eos     = 258 // <|im_end|>
	firstAT = 256
)

// scripts are the token texts of each script after its marker; all
// distinct.
var scripts = map[string][]string{
	"<|gen_tool|>":   {"<tool_call>\n{\"name\": \"" + ToolName + "\", \"arguments\": ", ToolArguments, "}\n</tool_call>"},
	"<|gen_answer|>": {"It is sunny", " in Paris."},
	"<|gen_chat|>":   {"<think>\n", Reasoning, "\n</think>\n\n", Greeting},
}

// markerOrder fixes the ids.
var markerOrder = []string{"<|gen_tool|>", "<|gen_answer|>", "<|gen_chat|>"}

// ChatTemplate is ChatML with a script marker as the generation prompt's
// last token.
const ChatTemplate = "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
	"{%- if add_generation_prompt %}<|im_start|>assistant\n" +
	"{%- if messages[-1].role == 'tool' %}<|gen_answer|>{%- elif tools %}<|gen_tool|>{%- else %}<|gen_chat|>{%- endif %}" +
	"{%- endif %}"

type added struct {
	id      int
	content string
	special bool
}

// addedTokens lists the special tokens, the markers and the script tokens.
func addedTokens() []added {
	out := []added{{256, "<|endoftext|>", true}, {257, "<|im_start|>", true}, {eos, "<|im_end|>", true}}
	id := 259
	for _, m := range markerOrder {
		out = append(out, added{id, m, true})
		id++
	}
	for _, m := range markerOrder {
		for _, s := range scripts[m] {
			out = append(out, added{id, s, false})
			id++
		}
	}
	return out
}

// qwenSplit is Qwen's pre-tokenizer regex.
const qwenSplit = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// byteChars is GPT-2's byte-to-unicode table.
func byteChars() []string {
	out := make([]string, 256)
	n := 0
	for b := range 256 {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE {
			out[b] = string(rune(b))
		} else {
			out[b] = string(rune(256 + n))
			n++
		}
	}
	return out
}

func tokenizerJSON() ([]byte, error) {
	v := map[string]int{}
	for b, c := range byteChars() {
		v[c] = b
	}
	var at []any
	for _, a := range addedTokens() {
		at = append(at, map[string]any{"id": a.id, "content": a.content, "single_word": false, "lstrip": false, "rstrip": false,
			"normalized": false, "special": a.special})
	}
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
	pre := map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Split", "pattern": map[string]any{"Regex": qwenSplit}, "behavior": "Isolated", "invert": false},
		byteLevel,
	}}
	return json.Marshal(map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": at,
		"normalizer": nil, "pre_tokenizer": pre, "post_processor": byteLevel, "decoder": byteLevel,
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "",
			"end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": v, "merges": []string{}},
	})
}

// next maps each token id to its successor in the scripts.
func next() map[int]int {
	ids := map[string]int{}
	for _, a := range addedTokens() {
		ids[a.content] = a.id
	}
	out := map[int]int{}
	for _, m := range markerOrder {
		prev := ids[m]
		for _, s := range scripts[m] {
			out[prev] = ids[s]
			prev = ids[s]
		}
		out[prev] = eos
	}
	return out
}

func f32(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// Write writes the scripted checkpoint into dir (which must exist).
func Write(dir string) error {
	const (
		heads, headDim, kvHeads = 2, 32, 1
		experts, width          = 2, 16
		alpha                   = 20 // the logit of a script's next token
	)
	rng := rand.New(rand.NewPCG(1, 2))
	normal := func(n int, std float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * std)
		}
		return v
	}
	ones := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	embed := normal(vocab*hidden, 1)
	head := make([]float32, vocab*hidden)
	for a, b := range next() {
		row := embed[a*hidden : (a+1)*hidden]
		var norm float64
		for _, x := range row {
			norm += float64(x) * float64(x)
		}
		// h = rmsnorm(e_a) = √hidden · e_a/‖e_a‖, so this row gives logit alpha.
		s := alpha / (math.Sqrt(norm) * math.Sqrt(hidden))
		for j, x := range row {
			head[b*hidden+j] += float32(float64(x) * s)
		}
	}
	t := func(name string, data []float32, shape ...int64) safetensors.WriteTensor {
		return safetensors.WriteTensor{Name: name, DType: safetensors.F32, Shape: shape, Data: f32(data)}
	}
	p := "model.layers.0."
	tensors := []safetensors.WriteTensor{
		t("model.embed_tokens.weight", embed, vocab, hidden),
		t("lm_head.weight", head, vocab, hidden),
		t("model.norm.weight", ones(hidden), hidden),
		t(p+"input_layernorm.weight", ones(hidden), hidden),
		t(p+"post_attention_layernorm.weight", ones(hidden), hidden),
		t(p+"self_attn.q_norm.weight", ones(headDim), headDim),
		t(p+"self_attn.k_norm.weight", ones(headDim), headDim),
		t(p+"self_attn.q_proj.weight", normal(heads*headDim*hidden, 0.1), heads*headDim, hidden),
		t(p+"self_attn.k_proj.weight", normal(kvHeads*headDim*hidden, 0.1), kvHeads*headDim, hidden),
		t(p+"self_attn.v_proj.weight", normal(kvHeads*headDim*hidden, 0.1), kvHeads*headDim, hidden),
		t(p+"self_attn.o_proj.weight", make([]float32, hidden*heads*headDim), hidden, heads*headDim),
		t(p+"mlp.gate.weight", make([]float32, experts*hidden), experts, hidden),
	}
	for e := range experts {
		ep := fmt.Sprintf("%smlp.experts.%d.", p, e)
		tensors = append(tensors,
			t(ep+"gate_proj.weight", normal(width*hidden, 0.1), width, hidden),
			t(ep+"up_proj.weight", normal(width*hidden, 0.1), width, hidden),
			t(ep+"down_proj.weight", make([]float32, hidden*width), hidden, width),
		)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	cfg := map[string]any{
		"architectures": []string{"Qwen3MoeForCausalLM"}, "model_type": "qwen3_moe",
		"hidden_size": hidden, "num_hidden_layers": 1, "num_attention_heads": heads, "num_key_value_heads": kvHeads, "head_dim": headDim,
		"vocab_size": vocab, "num_experts": experts, "num_experts_per_tok": 1, "moe_intermediate_size": width, "intermediate_size": 64,
		"decoder_sparse_step": 1, "mlp_only_layers": []int{}, "norm_topk_prob": true, "rms_norm_eps": 1e-6,
		"rope_theta": 10000.0, "max_position_embeddings": 2048, "tie_word_embeddings": false, "attention_bias": false,
		"hidden_act": "silu", "bos_token_id": 256, "eos_token_id": eos, "dtype": "float32",
	}
	tok, err := tokenizerJSON()
	if err != nil {
		return err
	}
	files := map[string]any{
		"config.json":            cfg,
		"generation_config.json": map[string]any{"eos_token_id": []int{eos, 256}},
		"tokenizer_config.json": map[string]any{"chat_template": ChatTemplate, "eos_token": "<|im_end|>", "bos_token": nil,
			"pad_token": "<|endoftext|>", "model_max_length": 2048},
	}
	for name, v := range files {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "tokenizer.json"), tok, 0o644)
}
