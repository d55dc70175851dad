package server

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/sample"
	"github.com/stretchr/testify/require"
)

// recognize feeds text and returns whether every byte was accepted and
// whether the object is complete.
func recognize(text string) (ok, done bool) {
	s := jsonState{mode: jTop}
	for i := range len(text) {
		if !s.feed(text[i]) {
			return false, false
		}
	}
	return true, s.mode == jDone
}

func TestJSONRecognizer(t *testing.T) {
	tests := []struct {
		text     string
		ok, done bool
	}{
		{`{}`, true, true},
		{`{ "a" : 1 ,"b":[ 1 , 2 ] }`, true, true},
		{` {"a": 1}`, false, false},                                 // the object starts at once
		{`{"a": 1} `, false, false},                                 // and nothing follows it
		{"{\n" + strings.Repeat(" ", 32) + `"a": 1}`, false, false}, // 33 spaces in a row
		{"{\n" + strings.Repeat(" ", 31) + `"a": 1}`, true, true},
		{`{"a": [1, -2.5e+3, 0.1, true, false, null, "x\"\u00e9"], "b": {"c": []}}`, true, true},
		{`{"a": "é ünïcode"}`, true, true},
		{`{"a"`, true, false},
		{`{"a": 12`, true, false},
		{`{"a": tr`, true, false},
		{`{"a": [1,`, true, false},
		{`[1]`, false, false},       // an array is not an object
		{`"x"`, false, false},       // nor a string
		{`{"a": 01}`, false, false}, // leading zero
		{`{"a": 1.}`, false, false},
		{`{"a": -}`, false, false},
		{`{"a": 1e}`, false, false},
		{`{a: 1}`, false, false},
		{`{"a" 1}`, false, false},
		{`{"a": 1,}`, false, false},
		{`{"a": [1,]}`, false, false},
		{`{"a": tru}`, false, false},
		{`{"a": "\x"}`, false, false},
		{`{"a": "\u12g4"}`, false, false},
		{"{\"a\": \"\n\"}", false, false}, // a raw control character in a string
		{`{"a": 1]`, false, false},
		{`{}{}`, false, false},
		{`{}x`, false, false},
	}
	for _, tc := range tests {
		ok, done := recognize(tc.text)
		require.Equal(t, tc.ok, ok, tc.text)
		require.Equal(t, tc.done, done, tc.text)
		if tc.done {
			require.True(t, json.Valid([]byte(tc.text)), tc.text)
		}
	}
}

// FuzzJSONRecognizer checks the recognizer against encoding/json: a text
// it accepts as complete is a valid JSON object, and a valid JSON object
// is accepted as complete.
func FuzzJSONRecognizer(f *testing.F) {
	for _, s := range []string{`{}`, `{"a": [1, 2.5e-3, true, null, "x\u00e9\n"]}`, `{"a":{"b":[]}}`, ` {}`, `{"a": 01}`, `[1]`, `{"a":"\x"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ok, done := recognize(text)
		object := json.Valid([]byte(text)) && strings.HasPrefix(text, "{") && strings.HasSuffix(text, "}")
		if ok && done {
			require.True(t, object, "accepted %q, which encoding/json refuses or is not an object", text)
		}
		// The recognizer refuses long whitespace runs (anywhere, to keep
		// the check simple here).
		if object && !strings.Contains(text, strings.Repeat(" ", maxSpace+1)) && !bytes.ContainsAny([]byte(text), "\t\n\r") {
			require.True(t, ok && done, "refused the JSON object %q", text)
		}
	})
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
			ok, _ := recognize(string(out))
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
