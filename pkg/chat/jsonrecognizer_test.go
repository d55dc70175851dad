package chat_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/stretchr/testify/require"
)

// recognize feeds text and returns whether every byte was accepted and
// whether the object is complete.
func recognize(text string) (ok, done bool) {
	var s chat.JSONRecognizer
	for i := range len(text) {
		if !s.Feed(text[i]) {
			return false, false
		}
	}
	return true, s.Done()
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
		if object && !strings.Contains(text, strings.Repeat(" ", chat.MaxJSONSpace+1)) && !bytes.ContainsAny([]byte(text), "\t\n\r") {
			require.True(t, ok && done, "refused the JSON object %q", text)
		}
	})
}
