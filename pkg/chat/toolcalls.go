package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// toolSchemas maps function name → parameter name → JSON-schema type, from
// the request's tools, for formats that write argument values as text.
type toolSchemas map[string]map[string]string

func parseToolSchemas(tools []json.RawMessage) toolSchemas {
	out := toolSchemas{}
	for _, raw := range tools {
		var t struct {
			Function struct {
				Name       string `json:"name"`
				Parameters struct {
					Properties map[string]struct {
						Type json.RawMessage `json:"type"`
					} `json:"properties"`
				} `json:"parameters"`
			} `json:"function"`
		}
		if json.Unmarshal(raw, &t) != nil || t.Function.Name == "" {
			continue
		}
		params := map[string]string{}
		for name, p := range t.Function.Parameters.Properties {
			var s string
			if json.Unmarshal(p.Type, &s) == nil {
				params[name] = s
				continue
			}
			// ["string", "null"]: the first non-null type decides.
			var list []string
			if json.Unmarshal(p.Type, &list) == nil {
				for _, x := range list {
					if x != "null" {
						params[name] = x
						break
					}
				}
			}
		}
		out[t.Function.Name] = params
	}
	return out
}

// argBuilder writes a JSON object in the order arguments appear.
type argBuilder struct {
	b bytes.Buffer
	n int
}

func (a *argBuilder) add(key string, val json.RawMessage) {
	if a.n == 0 {
		a.b.WriteByte('{')
	} else {
		a.b.WriteByte(',')
	}
	a.n++
	a.b.Write(jsonString(key))
	a.b.WriteByte(':')
	a.b.Write(val)
}

func (a *argBuilder) String() string {
	if a.n == 0 {
		return "{}"
	}
	return a.b.String() + "}"
}

// jsonString encodes s without HTML escaping.
func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return bytes.TrimRight(b.Bytes(), "\n")
}

// compactJSON validates raw as one JSON value and returns it compacted.
func compactJSON(raw []byte) (string, bool) {
	var b bytes.Buffer
	if err := json.Compact(&b, bytes.TrimSpace(raw)); err != nil {
		return "", false
	}
	if !json.Valid(b.Bytes()) {
		return "", false
	}
	return b.String(), true
}

// typedValue turns a textual argument into JSON using the schema type:
// strings stay strings, numbers/booleans/objects/arrays are parsed when the
// text is valid JSON of that kind; unknown parameters stay strings.
func typedValue(text, typ string) json.RawMessage {
	switch typ {
	case "integer", "number":
		t := strings.TrimSpace(text)
		if _, err := strconv.ParseFloat(t, 64); err == nil && json.Valid([]byte(t)) {
			return json.RawMessage(t)
		}
	case "boolean":
		switch strings.ToLower(strings.TrimSpace(text)) {
		case "true":
			return json.RawMessage("true")
		case "false":
			return json.RawMessage("false")
		}
	case "object", "array", "null":
		if c, ok := compactJSON([]byte(text)); ok {
			return json.RawMessage(c)
		}
	}
	return jsonString(text)
}

// decodeJSONCall decodes Qwen3's {"name": …, "arguments": …}.
func decodeJSONCall(_ *tagParser, body string, _ bool) ([]ToolCall, error) {
	var c struct {
		Name       string          `json:"name"`
		Arguments  json.RawMessage `json:"arguments"`
		Parameters json.RawMessage `json:"parameters"`
	}
	dec := json.NewDecoder(strings.NewReader(body))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("tool call is not a JSON object: %w", err)
	}
	if dec.More() {
		return nil, errors.New("tool call holds more than one JSON value")
	}
	if c.Name == "" {
		return nil, errors.New("tool call has no name")
	}
	args := c.Arguments
	if len(args) == 0 {
		args = c.Parameters
	}
	a, err := argumentsString(args)
	if err != nil {
		return nil, err
	}
	return []ToolCall{{Name: c.Name, Arguments: a}}, nil
}

// argumentsString normalises an arguments value to OpenAI's JSON string.
func argumentsString(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "{}", nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		if c, ok := compactJSON([]byte(s)); ok {
			return c, nil
		}
		return "", errors.New("arguments string is not JSON")
	}
	c, ok := compactJSON(raw)
	if !ok {
		return "", errors.New("arguments are not valid JSON")
	}
	return c, nil
}

// decodeXMLCalls decodes Qwen3-Coder blocks: one or more
// <function=NAME><parameter=P>\nVALUE\n</parameter>…</function>.
func decodeXMLCalls(p *tagParser, body string, _ bool) ([]ToolCall, error) {
	var calls []ToolCall
	rest := body
	for {
		i := strings.Index(rest, "<function=")
		if i < 0 {
			break
		}
		if strings.TrimSpace(rest[:i]) != "" {
			return nil, fmt.Errorf("unexpected text %q before <function=", clip(rest[:i]))
		}
		rest = rest[i+len("<function="):]
		j := strings.IndexByte(rest, '>')
		if j < 0 {
			return nil, errors.New("unterminated <function= tag")
		}
		name := strings.TrimSpace(rest[:j])
		if name == "" {
			return nil, errors.New("function without a name")
		}
		rest = rest[j+1:]
		end := strings.Index(rest, "</function>")
		fbody := rest
		if end >= 0 {
			fbody, rest = rest[:end], rest[end+len("</function>"):]
		} else {
			rest = ""
		}
		args, err := decodeXMLParams(fbody, p.tools[name])
		if err != nil {
			return nil, fmt.Errorf("function %s: %w", name, err)
		}
		calls = append(calls, ToolCall{Name: name, Arguments: args})
	}
	if strings.TrimSpace(rest) != "" {
		return nil, fmt.Errorf("unexpected text %q in tool call", clip(rest))
	}
	return calls, nil
}

func decodeXMLParams(body string, schema map[string]string) (string, error) {
	var a argBuilder
	rest := body
	for {
		i := strings.Index(rest, "<parameter=")
		if i < 0 {
			break
		}
		if strings.TrimSpace(rest[:i]) != "" {
			return "", fmt.Errorf("unexpected text %q before <parameter=", clip(rest[:i]))
		}
		rest = rest[i+len("<parameter="):]
		j := strings.IndexByte(rest, '>')
		if j < 0 {
			return "", errors.New("unterminated <parameter= tag")
		}
		name := strings.TrimSpace(rest[:j])
		rest = rest[j+1:]
		// The value ends at </parameter>, or (models sometimes forget the
		// close) at the next <parameter=.
		end := strings.Index(rest, "</parameter>")
		next := strings.Index(rest, "<parameter=")
		var val string
		switch {
		case end >= 0 && (next < 0 || end < next):
			val, rest = rest[:end], rest[end+len("</parameter>"):]
		case next >= 0:
			val, rest = rest[:next], rest[next:]
		default:
			val, rest = rest, ""
		}
		val = strings.TrimPrefix(val, "\n")
		val = strings.TrimSuffix(val, "\n")
		a.add(name, typedValue(val, schema[name]))
	}
	if strings.TrimSpace(rest) != "" {
		return "", fmt.Errorf("unexpected text %q in function body", clip(rest))
	}
	return a.String(), nil
}

// decodeDSMLCalls decodes DeepSeek DSML: <｜DSML｜invoke name="F"> with
// <｜DSML｜parameter name="p" string="true|false">VALUE</｜DSML｜parameter>.
// A close tag truncated to </｜DSML｜inv> (seen with quantised V4) is
// accepted.
func decodeDSMLCalls(p *tagParser, body string, _ bool) ([]ToolCall, error) {
	const (
		invokeOpen = "<｜DSML｜invoke"
		paramOpen  = "<｜DSML｜parameter"
		paramClose = "</｜DSML｜parameter>"
	)
	var calls []ToolCall
	parts := strings.Split(body, invokeOpen)
	if strings.TrimSpace(parts[0]) != "" {
		return nil, fmt.Errorf("unexpected text %q before invoke", clip(parts[0]))
	}
	for _, part := range parts[1:] {
		j := strings.IndexByte(part, '>')
		if j < 0 {
			return nil, errors.New("unterminated invoke tag")
		}
		name, ok := attr(part[:j], "name")
		if !ok || name == "" {
			return nil, errors.New("invoke without a name")
		}
		rest := part[j+1:]
		// Drop the invoke close (or its truncated form) and whatever follows.
		if k := strings.Index(rest, "</｜DSML｜inv"); k >= 0 {
			tail := rest[k:]
			if gt := strings.IndexByte(tail, '>'); gt >= 0 && strings.TrimSpace(tail[gt+1:]) != "" {
				return nil, fmt.Errorf("unexpected text %q after invoke close", clip(tail[gt+1:]))
			}
			rest = rest[:k]
		}
		var a argBuilder
		for {
			i := strings.Index(rest, paramOpen)
			if i < 0 {
				break
			}
			if strings.TrimSpace(rest[:i]) != "" {
				return nil, fmt.Errorf("unexpected text %q before parameter", clip(rest[:i]))
			}
			rest = rest[i+len(paramOpen):]
			k := strings.IndexByte(rest, '>')
			if k < 0 {
				return nil, errors.New("unterminated parameter tag")
			}
			head := rest[:k]
			rest = rest[k+1:]
			pname, ok := attr(head, "name")
			if !ok {
				return nil, errors.New("parameter without a name")
			}
			end := strings.Index(rest, paramClose)
			var val string
			if end >= 0 {
				val, rest = rest[:end], rest[end+len(paramClose):]
			} else {
				val, rest = rest, ""
			}
			isString, hasString := attr(head, "string")
			switch {
			case hasString && isString == "true":
				a.add(pname, jsonString(val))
			case hasString:
				if c, ok := compactJSON([]byte(val)); ok {
					a.add(pname, json.RawMessage(c))
				} else {
					a.add(pname, jsonString(val))
				}
			default:
				a.add(pname, typedValue(val, p.tools[name][pname]))
			}
		}
		if strings.TrimSpace(rest) != "" {
			return nil, fmt.Errorf("unexpected text %q in invoke", clip(rest))
		}
		calls = append(calls, ToolCall{Name: name, Arguments: a.String()})
	}
	return calls, nil
}

// attr reads key="value" from a tag head.
func attr(head, key string) (string, bool) {
	i := strings.Index(head, key+"=\"")
	for i > 0 && head[i-1] != ' ' && head[i-1] != '\t' && head[i-1] != '\n' {
		j := strings.Index(head[i+1:], key+"=\"")
		if j < 0 {
			return "", false
		}
		i += 1 + j
	}
	if i < 0 {
		return "", false
	}
	rest := head[i+len(key)+2:]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return rest[:j], true
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// ---- Gemma 4 ---------------------------------------------------------------

const gemmaQuote = `<|"|>`

// decodeGemmaCall decodes call:NAME{key:value,…} where strings are
// delimited by <|"|> and keys are bare.
func decodeGemmaCall(_ *tagParser, body string, _ bool) ([]ToolCall, error) {
	s := strings.TrimSpace(body)
	if !strings.HasPrefix(s, "call:") {
		return nil, errors.New("gemma tool call does not start with call:")
	}
	s = s[len("call:"):]
	i := strings.IndexByte(s, '{')
	if i <= 0 {
		return nil, errors.New("gemma tool call without a name or arguments")
	}
	name := strings.TrimSpace(s[:i])
	g := &gemmaReader{s: s[i:]}
	var b bytes.Buffer
	if err := g.value(&b, 0); err != nil {
		return nil, err
	}
	if strings.TrimSpace(g.s[g.pos:]) != "" {
		return nil, fmt.Errorf("unexpected text %q after gemma arguments", clip(g.s[g.pos:]))
	}
	if b.Len() == 0 || b.Bytes()[0] != '{' {
		return nil, errors.New("gemma arguments are not an object")
	}
	return []ToolCall{{Name: name, Arguments: b.String()}}, nil
}

type gemmaReader struct {
	s   string
	pos int
}

func (g *gemmaReader) skipSpace() {
	for g.pos < len(g.s) && strings.IndexByte(" \t\r\n", g.s[g.pos]) >= 0 {
		g.pos++
	}
}

func (g *gemmaReader) value(b *bytes.Buffer, depth int) error {
	if depth > 64 {
		return errors.New("gemma arguments nested too deeply")
	}
	g.skipSpace()
	rest := g.s[g.pos:]
	switch {
	case strings.HasPrefix(rest, gemmaQuote):
		str, err := g.quoted()
		if err != nil {
			return err
		}
		b.Write(jsonString(str))
	case strings.HasPrefix(rest, "{"):
		g.pos++
		b.WriteByte('{')
		for n := 0; ; n++ {
			g.skipSpace()
			if strings.HasPrefix(g.s[g.pos:], "}") {
				g.pos++
				break
			}
			if n > 0 {
				if !strings.HasPrefix(g.s[g.pos:], ",") {
					return errors.New("expected ',' or '}' in gemma object")
				}
				g.pos++
				g.skipSpace()
				b.WriteByte(',')
			}
			key, err := g.key()
			if err != nil {
				return err
			}
			b.Write(jsonString(key))
			b.WriteByte(':')
			if err := g.value(b, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case strings.HasPrefix(rest, "["):
		g.pos++
		b.WriteByte('[')
		for n := 0; ; n++ {
			g.skipSpace()
			if strings.HasPrefix(g.s[g.pos:], "]") {
				g.pos++
				break
			}
			if n > 0 {
				if !strings.HasPrefix(g.s[g.pos:], ",") {
					return errors.New("expected ',' or ']' in gemma list")
				}
				g.pos++
				b.WriteByte(',')
			}
			if err := g.value(b, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		// Bare scalar: number, true, false, null.
		end := g.pos
		for end < len(g.s) && strings.IndexByte(",}] \t\r\n", g.s[end]) < 0 {
			end++
		}
		lit := g.s[g.pos:end]
		if lit == "" {
			return errors.New("missing value in gemma arguments")
		}
		switch lit {
		case "true", "false", "null":
		case "True", "False", "None":
			lit = map[string]string{"True": "true", "False": "false", "None": "null"}[lit]
		default:
			if _, err := strconv.ParseFloat(lit, 64); err != nil || !json.Valid([]byte(lit)) {
				return fmt.Errorf("unquoted gemma value %q", clip(lit))
			}
		}
		b.WriteString(lit)
		g.pos = end
	}
	return nil
}

func (g *gemmaReader) quoted() (string, error) {
	g.pos += len(gemmaQuote)
	end := strings.Index(g.s[g.pos:], gemmaQuote)
	if end < 0 {
		return "", errors.New("unterminated gemma string")
	}
	s := g.s[g.pos : g.pos+end]
	g.pos += end + len(gemmaQuote)
	return s, nil
}

func (g *gemmaReader) key() (string, error) {
	if strings.HasPrefix(g.s[g.pos:], gemmaQuote) {
		k, err := g.quoted()
		if err != nil {
			return "", err
		}
		g.skipSpace()
		if !strings.HasPrefix(g.s[g.pos:], ":") {
			return "", errors.New("expected ':' after gemma key")
		}
		g.pos++
		return k, nil
	}
	end := strings.IndexByte(g.s[g.pos:], ':')
	if end <= 0 {
		return "", errors.New("expected key: in gemma object")
	}
	k := strings.TrimSpace(g.s[g.pos : g.pos+end])
	if k == "" || strings.ContainsAny(k, "{}[],") {
		return "", fmt.Errorf("bad gemma key %q", clip(k))
	}
	g.pos += end + 1
	return k, nil
}
