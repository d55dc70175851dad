package server

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/sample"
	"github.com/stretchr/testify/require"
)

// allowed returns the ids Mask leaves.
func allowed(c *toolConstraint) map[int32]bool {
	logits := make([]float32, len(c.v.text)+2) // ids past the vocabulary are masked too
	c.Mask(logits)
	out := map[int32]bool{}
	for id, l := range logits {
		if !math.IsInf(float64(l), -1) {
			out[int32(id)] = true
		}
	}
	return out
}

// Harmony through the constraint: the special tokens' texts (kept by the
// harmony decoder) spell the forced header, and the end-of-sequence
// <|call|> closes the call, while the other end-of-sequence tokens wait
// for the call to be complete.
func TestToolConstraintHarmonyEOS(t *testing.T) {
	texts := []string{"<|channel|>", "commentary", " to=functions.", "get_weather", "search_docs", " ", "<|constrain|>", "json",
		"<|message|>", "{", "}", `"a"`, ":", "1", "<|end|>", "<|call|>", "<|return|>", "", "analysis"}
	id := map[string]int32{}
	for i, s := range texts {
		id[s] = int32(i)
	}
	v := &jsonVocab{text: texts, eos: map[int32]bool{id["<|call|>"]: true, id["<|return|>"]: true}}
	g, err := chat.ForceToolCall(chat.FormatHarmony, []string{"get_weather"}, false)
	require.NoError(t, err)
	c := newToolConstraint(v, g)
	path := []string{"<|channel|>", "commentary", " to=functions.", "get_weather", " ", "<|constrain|>", "json", "<|message|>", "{", `"a"`, ":", "1", "}"}
	for _, s := range path {
		a := allowed(c)
		require.True(t, a[id[s]], "%q", s)
		require.False(t, a[id["<|return|>"]], "end of sequence before the call is complete")
		require.False(t, a[id["<|call|>"]], "the call is not complete before %q", s)
		require.False(t, a[id[""]], "an empty token")
		require.False(t, a[int32(len(texts))], "an id past the vocabulary")
		c.Accept(id[s])
	}
	a := allowed(c)
	require.Equal(t, map[int32]bool{id["<|call|>"]: true}, a, "only <|call|> closes the call")
	c.Accept(id["<|call|>"])
	require.True(t, c.m.Done())
	require.Equal(t, map[int32]bool{id["<|call|>"]: true, id["<|return|>"]: true}, allowed(c), "then any end of sequence")
}

// Sampling random logits under the constraint over a small Qwen3
// vocabulary never picks a masked token, and every sequence that ends
// (end-of-sequence) parses into one call of a forced name.
func TestToolConstraintSampling(t *testing.T) {
	texts := []string{"<tool_call>", "\n", `{"name": "`, "get_weather", "search_docs", "get", `", "arguments": `, "{", "}", "\n</tool_call>",
		"</tool_call>", `"a"`, `"b`, `c"`, ":", ": ", ",", " ", "[", "]", "1", "2.", "5", "true", "null", "é", "<", "tool", "_call", ">", "x", "",
	}
	for c := byte(' '); c <= '~'; c++ {
		texts = append(texts, string(c)) // single bytes: no piece leads to a dead end
	}
	texts = append(texts, "<|im_end|>")
	eos := int32(len(texts) - 1)
	v := &jsonVocab{text: append([]string(nil), texts...), eos: map[int32]bool{eos: true}}
	v.text[eos] = "" // a special token the Qwen decoder drops
	names := []string{"get_weather", "search_docs"}
	g, err := chat.ForceToolCall(chat.FormatQwen3, names, false)
	require.NoError(t, err)
	completed := 0
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		seedCopy := seed
		sm, err := sample.New(sample.Options{Temperature: 1, Seed: &seedCopy})
		require.NoError(t, err)
		c := newToolConstraint(v, g)
		var out strings.Builder
		for range 400 {
			logits := make([]float32, len(texts))
			for i := range logits {
				logits[i] = float32(rng.NormFloat64() * 2)
			}
			c.Mask(logits)
			res, err := sm.Sample(logits)
			require.NoError(t, err, "dead end after %q", out.String())
			require.False(t, math.IsInf(float64(logits[res.Token]), -1), "a masked token was sampled")
			c.Accept(res.Token)
			if res.Token == eos {
				p := chat.NewParser(chat.FormatQwen3, chat.ParserOptions{})
				evs := append(p.Feed(out.String()), p.Finish()...)
				content, _, calls := chat.Collect(evs)
				require.Empty(t, content, out.String())
				require.Len(t, calls, 1, out.String())
				require.Contains(t, names, calls[0].Name)
				require.True(t, json.Valid([]byte(calls[0].Arguments)))
				completed++
				break
			}
			out.WriteString(v.text[res.Token])
		}
	}
	t.Logf("%d of 200 completed", completed)
	require.Greater(t, completed, 20)
}
