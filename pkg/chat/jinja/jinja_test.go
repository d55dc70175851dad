package jinja_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/maniac-ai/mach/pkg/chat/jinja"
	"github.com/stretchr/testify/require"
)

type jinjaCase struct {
	Name      string          `json:"name"`
	Template  string          `json:"template"`
	Vars      json.RawMessage `json:"vars"`
	Output    *string         `json:"output"`
	ErrorType *string         `json:"error_type"`
	Error     *string         `json:"error"`
}

var caseNow = time.Date(2026, 1, 15, 9, 30, 0, 0, time.UTC)

func vars(tb testing.TB, raw json.RawMessage) map[string]any {
	tb.Helper()
	v, err := jinja.FromJSON(raw)
	require.NoError(tb, err)
	d := v.(*jinja.Dict)
	out := map[string]any{}
	for _, k := range d.Keys() {
		out[k], _ = d.Get(k)
	}
	return out
}

// TestJinja2Cases compares with jinja2 3.1 configured as transformers
// configures it (tools/refgen/jinja_cases.py).
func TestJinja2Cases(t *testing.T) {
	f, err := os.Open("../../../testdata/chat/jinja_cases.jsonl")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		var c jinjaCase
		require.NoError(t, json.Unmarshal(sc.Bytes(), &c))
		n++
		t.Run(c.Name, func(t *testing.T) {
			tpl, err := jinja.Parse(c.Template)
			if err != nil && c.ErrorType != nil && *c.ErrorType == "UndefinedError" && strings.Contains(err.Error(), "is not defined") {
				// Calling an undefined function fails at Parse here, at
				// render in jinja2: earlier and clearer, same verdict.
				return
			}
			require.NoError(t, err)
			out, err := tpl.Render(vars(t, c.Vars), jinja.RenderOptions{Now: caseNow})
			if c.ErrorType == nil {
				require.NoError(t, err)
				require.Equal(t, *c.Output, out)
				return
			}
			require.Error(t, err, "jinja2 raised %s: %s", *c.ErrorType, *c.Error)
			var raised *jinja.RaisedError
			var rerr *jinja.RenderError
			switch {
			case errors.As(err, &raised):
				require.Equal(t, "TemplateError", *c.ErrorType)
				require.Equal(t, *c.Error, raised.Message)
			case errors.As(err, &rerr):
				require.Equal(t, *c.ErrorType, rerr.Kind, "%v", err)
			default:
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
		})
	}
	require.NoError(t, sc.Err())
	require.Greater(t, n, 100)
}

// TestUnsupportedAtParse: constructs the engine lacks fail at Parse with a
// message naming them, never at render and never as wrong text.
func TestUnsupportedAtParse(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"{{ x | wordwrap(10) }}", "filter 'wordwrap'"},
		{"{% if x is prime %}{% endif %}", "test 'prime'"},
		{"{{ cycler('a') }}", "function 'cycler'"},
		{"{{ 'a{}'.format(1) }}", "method 'format'"},
		{"{% include 'x.jinja' %}", "'include'"},
		{"{% extends 'base' %}", "'extends'"},
		{"{% call m() %}x{% endcall %}", "'call'"},
		{"{% for x in y recursive %}{% endfor %}", "recursive"},
		{"{% do x.append(1) %}", "'do'"},
		{"{{ f(*args) }}", "*args"},
		{"{% if x %}", "expected 'elif' or 'else' or 'endif'"},
		{"{{ x ", "never closed"},
		{"{# x", "never closed"},
		{"{% endfor %}", "unexpected 'endfor'"},
		{"{% else %}", "unexpected 'else'"},
		{"{{ 'abc }}", "never closed"},
		{"{{ x @ y }}", "unexpected character"},
		{"{% set %}", "expected a name"},
		{"{% macro m(a=1, b) %}{% endmacro %}", "non-default parameter"},
	} {
		_, err := jinja.Parse(c.src)
		require.Error(t, err, c.src)
		require.ErrorIs(t, err, jinja.ErrSyntax, c.src)
		require.Contains(t, err.Error(), c.want, c.src)
		var se *jinja.SyntaxError
		require.ErrorAs(t, err, &se)
		require.Greater(t, se.Line, 0)
	}
}

func TestLimits(t *testing.T) {
	for _, c := range []struct {
		src  string
		lim  jinja.Limits
		want string
	}{
		{"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", jinja.Limits{}, "nested deeper"},
		{"{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(100) %}{% endfor %}{% endfor %}{% endfor %}", jinja.Limits{MaxSteps: 100000}, "steps"},
		{"{% for i in range(100000) %}xxxxxxxxxx{% endfor %}", jinja.Limits{MaxOutput: 1000}, "output exceeds"},
		{"{{ range(100000000) }}", jinja.Limits{}, "range()"},
		{"{{ 'x' * 100000000 }}", jinja.Limits{}, "repetition"},
	} {
		tpl, err := jinja.Parse(c.src)
		require.NoError(t, err)
		_, err = tpl.Render(nil, jinja.RenderOptions{Limits: c.lim})
		require.ErrorIs(t, err, jinja.ErrRender, c.src)
		require.Contains(t, err.Error(), c.want, c.src)
	}
}

func TestFromJSONKeepsPythonTypes(t *testing.T) {
	v, err := jinja.FromJSON([]byte(`{"b": 1, "a": 1.0, "c": 1e-05, "d": [true, null, "é"], "e": 123456789012345678901234}`))
	require.NoError(t, err)
	s, err := jinja.ToJSON(v)
	require.NoError(t, err)
	require.Equal(t, `{"b": 1, "a": 1.0, "c": 1e-05, "d": [true, null, "é"], "e": 1.2345678901234569e+23}`, s) // beyond int64 Python keeps an exact int; this engine a float
	_, err = jinja.FromJSON([]byte(`{"a": 1} x`))
	require.Error(t, err)
	_, err = jinja.FromJSON([]byte(strings.Repeat("[", 600) + strings.Repeat("]", 600)))
	require.Error(t, err)
}

// FuzzParse: arbitrary template source never panics, and what parses
// renders (or fails cleanly) within small limits.
func FuzzParse(f *testing.F) {
	entries, err := os.ReadDir("../../../testdata/chat/templates")
	require.NoError(f, err)
	for _, e := range entries {
		b, err := os.ReadFile("../../../testdata/chat/templates/" + e.Name())
		require.NoError(f, err)
		f.Add(string(b))
	}
	cf, err := os.Open("../../../testdata/chat/jinja_cases.jsonl")
	require.NoError(f, err)
	defer cf.Close()
	sc := bufio.NewScanner(cf)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c jinjaCase
		require.NoError(f, json.Unmarshal(sc.Bytes(), &c))
		f.Add(c.Template)
	}
	msgs, _ := jinja.FromJSON([]byte(`[{"role":"system","content":"s"},{"role":"user","content":"hi"},{"role":"assistant","content":"yo","reasoning_content":"r","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":{"a":1}}}]},{"role":"tool","content":"{}"}]`))
	tools, _ := jinja.FromJSON([]byte(`[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}}]`))
	f.Fuzz(func(t *testing.T, src string) {
		tpl, err := jinja.Parse(src)
		if err != nil {
			require.ErrorIs(t, err, jinja.ErrSyntax)
			return
		}
		_, err = tpl.Render(map[string]any{"messages": msgs, "tools": tools, "add_generation_prompt": true, "bos_token": "<s>"},
			jinja.RenderOptions{Now: caseNow, Limits: jinja.Limits{MaxOutput: 1 << 20, MaxSteps: 100000, MaxDepth: 50}})
		if err != nil {
			require.True(t, errors.Is(err, jinja.ErrRender) || errors.Is(err, jinja.ErrRaised), "%T %v", err, err)
		}
	})
}

// FuzzFromJSON: FromJSON accepts exactly what encoding/json accepts and
// decodes to the same values.
func FuzzFromJSON(f *testing.F) {
	for _, s := range []string{`{"a": [1, 2.5, "x\u00e9\ud83d\ude00"], "b": {"c": null, "d": true}}`, `[]`, `"\ud800"`, `1e999`, `-0.0`, `{"a":1,"a":2}`, "\"\xff\"", `[1,]`, `01`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := jinja.FromJSON(data)
		var ref any
		refErr := json.Unmarshal(data, &ref)
		if refErr != nil {
			var rangeErr *json.UnmarshalTypeError
			if errors.As(refErr, &rangeErr) {
				return // 1e999: Python gives inf, encoding/json an error
			}
			require.Error(t, err, "accepted what encoding/json rejects: %v", refErr)
			return
		}
		if err != nil && strings.Contains(err.Error(), "nesting deeper") {
			return
		}
		require.NoError(t, err)
		s, err := jinja.ToJSON(v)
		require.NoError(t, err)
		var back any
		require.NoError(t, json.Unmarshal([]byte(s), &back), s)
		require.Equal(t, ref, back)
	})
}
