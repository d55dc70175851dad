package server

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/sample"
	"github.com/stretchr/testify/require"
)

// recognize feeds text and returns whether every byte was accepted.
func recognize(text string) bool {
	var s chat.JSONRecognizer
	for i := range len(text) {
		if !s.Feed(text[i]) {
			return false
		}
	}
	return true
}

// Sampling under the constraint from random logits only ever produces
// JSON object prefixes, and ends (end-of-sequence) only on a complete
// object.
func TestJSONConstraintSampling(t *testing.T) {
	pieces := []string{"{", "}", `"a"`, `"b`, `c"`, ":", ": ", ",", " ", "[", "]", "1", "2.", "5", "-", "true", "nul", "l", `\n`, "é", "{\"", "\"}", "x", "", "<|im_end|>"}
	const eos = 25
	v := &jsonVocab{text: make([]string, eos+1), eos: map[int32]bool{eos: true}}
	copy(v.text, pieces[:len(pieces)-1]) // the last is a special token: "" (never allowed)
	completed := 0
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		seedCopy := seed
		sm, err := sample.New(sample.Options{Temperature: 1, Seed: &seedCopy})
		require.NoError(t, err)
		c := newJSONConstraint(v)
		var out []byte
		for range 300 {
			logits := make([]float32, eos+1)
			for i := range logits {
				logits[i] = float32(rng.NormFloat64() * 2)
			}
			c.Mask(logits)
			res, err := sm.Sample(logits)
			require.NoError(t, err)
			require.False(t, math.IsInf(float64(logits[res.Token]), -1), "a masked token was sampled")
			c.Accept(res.Token)
			if res.Token == eos {
				require.True(t, json.Valid(out), "ended on %q", out)
				completed++
				break
			}
			out = append(out, v.text[res.Token]...)
			ok := recognize(string(out))
			require.True(t, ok, "not a JSON object prefix: %q", out)
		}
	}
	require.Greater(t, completed, 20, "random walks close the object often enough")
}

// FuzzRequestFields: the readers of the flexible request fields (string or
// array or object) never panic on any JSON, and reject what they cannot
// read with a 400 naming the field.
func FuzzRequestFields(f *testing.F) {
	for _, s := range []string{`"stop"`, `["a","b"]`, `[1,2,3]`, `[[1,2]]`, `[{"type":"text","text":"hi"}]`, `{"type":"function","function":{"name":"f"}}`, `null`, `{"a":1}`, `"auto"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		check := func(err error) {
			if err == nil {
				return
			}
			ae, ok := err.(*apiError)
			require.True(t, ok, "%T: %v", err, err)
			require.Equal(t, 400, ae.Status)
		}
		_, err := stopStrings(raw)
		check(err)
		_, _, err = promptInput(raw)
		check(err)
		_, err = contentText(raw, "messages[0].content")
		check(err)
		_, err = parseToolChoice(raw, nil)
		check(err)
		_, err = toolNames([]json.RawMessage{raw})
		check(err)
		_, _ = argumentsText(raw)
	})
}
