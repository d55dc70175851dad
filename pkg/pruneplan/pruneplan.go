// Package pruneplan reads and writes prune plans: JSON Lines files, one
// candidate per line, each saying which routed experts of every MoE layer
// to keep. mach-reap writes them; mach-prune applies one.
//
// A line:
//
//	{"candidate_id": "qwen3_6_a3b_uniform_avgk128", "num_experts": 256,
//	 "keep": {"0": [0, 3, 7, …], "1": […], …},
//	 "model_type": "qwen3_5_moe", "source": "Qwen/Qwen3.6-35B-A3B",
//	 "method": "reap", "scores": {"0": [0.12, …], …}, "meta": {…}}
//
// candidate_id, num_experts (the source model's routed experts per layer)
// and keep (MoE layer index as a decimal string → the kept source expert
// ids, ascending, no duplicates) are required. The rest is optional
// provenance: model_type, source (the checkpoint the plan was made for),
// method (reap, frequency, uniform, manual, …), scores (per layer, one
// saliency per source expert) and meta (any JSON object, for tools).
// Unknown keys, duplicate keys, non-integer ids and blank candidate ids are
// errors naming the line and the field, so a typo never passes silently.
// Blank lines are ignored.
package pruneplan

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/maniac-ai/mach/pkg/atomicfile"
	"github.com/maniac-ai/mach/pkg/fault"
)

// Limits on untrusted plans.
const (
	// MaxLineSize bounds one candidate's line. A 256-expert, 94-layer plan
	// with scores is about 0.6 MB.
	MaxLineSize = 32 << 20
	// MaxFileSize bounds a plan file.
	MaxFileSize = 1 << 30
	// MaxCandidates bounds the lines of a plan.
	MaxCandidates = 100_000
	// MaxExperts bounds num_experts; MaxLayers the layer indices.
	MaxExperts = 1 << 20
	MaxLayers  = 1 << 16
	// MaxIDLength bounds candidate_id.
	MaxIDLength = 256
)

// ErrInvalid is wrapped by every error about a malformed plan.
var ErrInvalid = errors.New("invalid prune plan")

// ErrUnknownCandidate is wrapped when a plan has no candidate of the id
// asked for.
var ErrUnknownCandidate = errors.New("unknown candidate")

// Candidate is one line of a plan.
type Candidate struct {
	ID string
	// NumExperts is the source model's routed-expert count per layer.
	NumExperts int
	// Keep maps a MoE layer index to the source expert ids kept, ascending.
	// The pruned layer's expert i is source expert Keep[layer][i].
	Keep map[int][]int

	// Optional provenance.
	ModelType string
	Source    string
	Method    string
	// Scores maps a layer to one saliency per source expert.
	Scores map[int][]float64
	// Meta is a JSON object for tools, kept as written.
	Meta json.RawMessage

	// Line is the 1-based line the candidate was read from (0 when built
	// in code).
	Line int
}

// Layers returns the layers of Keep, ascending.
func (c *Candidate) Layers() []int {
	out := make([]int, 0, len(c.Keep))
	for l := range c.Keep {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// Removed returns the source experts of layer that Keep drops, ascending.
func (c *Candidate) Removed(layer int) []int {
	keep := c.Keep[layer]
	var out []int
	for e := range c.NumExperts {
		if _, found := slices.BinarySearch(keep, e); !found {
			out = append(out, e)
		}
	}
	return out
}

// KeepsAll reports whether every layer keeps every expert.
func (c *Candidate) KeepsAll() bool {
	for _, k := range c.Keep {
		if len(k) != c.NumExperts {
			return false
		}
	}
	return true
}

// Validate checks a candidate built in code by the rules the parser
// applies.
func (c *Candidate) Validate() error {
	where := "candidate"
	if c.Line > 0 {
		where = fmt.Sprintf("line %d", c.Line)
	}
	bad := func(format string, args ...any) error {
		return fault.Mark(fmt.Errorf("%w: %s: %s", ErrInvalid, where, fmt.Sprintf(format, args...)), fault.ErrIO)
	}
	if err := checkID(c.ID); err != nil {
		return bad("candidate_id: %v", err)
	}
	if c.NumExperts < 1 || c.NumExperts > MaxExperts {
		return bad("num_experts: %d is not in [1, %d]", c.NumExperts, MaxExperts)
	}
	if len(c.Keep) == 0 {
		return bad("keep: no layers")
	}
	for _, l := range c.Layers() {
		if l < 0 || l >= MaxLayers {
			return bad("keep: layer %d is not in [0, %d)", l, MaxLayers)
		}
		if err := checkKeep(c.Keep[l], c.NumExperts); err != nil {
			return bad("keep[%q]: %v", strconv.Itoa(l), err)
		}
	}
	for l, s := range c.Scores {
		if _, ok := c.Keep[l]; !ok {
			return bad("scores[%q]: layer %d is not in keep", strconv.Itoa(l), l)
		}
		if len(s) != c.NumExperts {
			return bad("scores[%q]: %d scores for %d experts (num_experts)", strconv.Itoa(l), len(s), c.NumExperts)
		}
		for i, v := range s {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return bad("scores[%q][%d]: %v is not a finite number", strconv.Itoa(l), i, v)
			}
		}
	}
	if c.Meta != nil {
		if t := bytes.TrimSpace(c.Meta); len(t) == 0 || t[0] != '{' || !json.Valid(t) {
			return bad("meta: want a JSON object")
		}
	}
	return nil
}

func checkID(id string) error {
	switch {
	case strings.TrimSpace(id) == "":
		return errors.New("empty")
	case len(id) > MaxIDLength:
		return fmt.Errorf("longer than %d bytes", MaxIDLength)
	case !utf8.ValidString(id):
		return errors.New("not valid UTF-8")
	case strings.IndexFunc(id, unicode.IsControl) >= 0:
		return errors.New("contains control characters")
	}
	return nil
}

func checkKeep(keep []int, n int) error {
	if len(keep) == 0 {
		return errors.New("keeps no expert; every MoE layer needs at least its top-k")
	}
	for i, e := range keep {
		switch {
		case e < 0 || e >= n:
			return fmt.Errorf("expert %d is out of range: num_experts is %d, so ids run 0..%d", e, n, n-1)
		case i > 0 && e == keep[i-1]:
			return fmt.Errorf("expert %d is listed twice", e)
		case i > 0 && e < keep[i-1]:
			return fmt.Errorf("expert ids must be ascending, but %d follows %d", e, keep[i-1])
		}
	}
	return nil
}

// KeepAll returns a candidate keeping every one of numExperts experts in
// each layer of layers.
func KeepAll(id string, numExperts int, layers []int) Candidate {
	c := Candidate{ID: id, NumExperts: numExperts, Keep: map[int][]int{}}
	for _, l := range layers {
		all := make([]int, numExperts)
		for i := range all {
			all[i] = i
		}
		c.Keep[l] = all
	}
	return c
}

// Plan is a parsed plan file.
type Plan struct {
	// Path is the file read ("" when parsed from a reader).
	Path       string
	Candidates []Candidate
}

// IDs returns the candidate ids in file order.
func (p *Plan) IDs() []string {
	out := make([]string, len(p.Candidates))
	for i, c := range p.Candidates {
		out[i] = c.ID
	}
	return out
}

// Find returns the candidate id. An unknown id is an error wrapping
// ErrUnknownCandidate (and fault.ErrUsage) that lists the ids available.
func (p *Plan) Find(id string) (*Candidate, error) {
	for i := range p.Candidates {
		if p.Candidates[i].ID == id {
			return &p.Candidates[i], nil
		}
	}
	ids := p.IDs()
	const show = 20
	list := strings.Join(quote(ids[:min(len(ids), show)]), ", ")
	if len(ids) > show {
		list += fmt.Sprintf(", … (%d more)", len(ids)-show)
	}
	where := "the plan"
	if p.Path != "" {
		where = p.Path
	}
	return nil, fault.Mark(fmt.Errorf("%w %q: %s has %d candidate(s): %s", ErrUnknownCandidate, id, where, len(ids), list), fault.ErrUsage)
}

func quote(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = strconv.Quote(x)
	}
	return out
}

// ReadFile reads and validates a plan file.
func ReadFile(path string) (*Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("open plan: %w", err), fault.ErrIO)
	}
	defer f.Close()
	p, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p.Path = path
	return p, nil
}

// Parse reads and validates a plan. Every error wraps ErrInvalid (and
// fault.ErrIO) and names the line and field.
func Parse(r io.Reader) (*Plan, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, MaxFileSize+1), 64<<10)
	p := &Plan{}
	seen := map[string]int{}
	var total int64
	for line := 1; ; line++ {
		b, err := readLine(br, line)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		total += int64(len(b)) + 1
		if total > MaxFileSize+1 {
			return nil, invalid(line, "the plan is larger than %d bytes", int64(MaxFileSize))
		}
		if t := bytes.TrimSpace(b); len(t) > 0 {
			if len(p.Candidates) == MaxCandidates {
				return nil, invalid(line, "more than %d candidates", MaxCandidates)
			}
			c, perr := parseCandidate(t, line)
			if perr != nil {
				return nil, perr
			}
			if prev, dup := seen[c.ID]; dup {
				return nil, invalid(line, "candidate_id %q is already used on line %d", c.ID, prev)
			}
			seen[c.ID] = line
			p.Candidates = append(p.Candidates, c)
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if len(p.Candidates) == 0 {
		return nil, fault.Mark(fmt.Errorf("%w: no candidates (want one JSON object per line)", ErrInvalid), fault.ErrIO)
	}
	return p, nil
}

// readLine returns the next line without its newline; io.EOF after the
// last one.
func readLine(br *bufio.Reader, line int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > MaxLineSize+1 {
			return nil, invalid(line, "longer than %d bytes", MaxLineSize)
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return buf[:len(buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return buf, io.EOF
		default:
			return nil, fault.Mark(fmt.Errorf("read plan: line %d: %w", line, err), fault.ErrIO)
		}
	}
}

func invalid(line int, format string, args ...any) error {
	return fault.Mark(fmt.Errorf("%w: line %d: %s", ErrInvalid, line, fmt.Sprintf(format, args...)), fault.ErrIO)
}

// knownFields are the keys a candidate line may have.
var knownFields = []string{"candidate_id", "num_experts", "keep", "model_type", "source", "method", "scores", "meta"}

// object reads a JSON object's members in order, rejecting duplicate keys.
func object(data []byte) ([]string, []json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("not a JSON object")
	}
	var keys []string
	var vals []json.RawMessage
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		k := tok.(string) // object keys are strings
		if slices.Contains(keys, k) {
			return nil, nil, fmt.Errorf("key %q appears twice", k)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("%q: %v", k, err)
		}
		keys, vals = append(keys, k), append(vals, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("trailing data after the object")
	}
	return keys, vals, nil
}

func parseCandidate(data []byte, line int) (Candidate, error) {
	c := Candidate{Line: line}
	keys, vals, err := object(data)
	if err != nil {
		return c, invalid(line, "%v", err)
	}
	field := map[string]json.RawMessage{}
	for i, k := range keys {
		if !slices.Contains(knownFields, k) {
			return c, invalid(line, "unknown field %q (known: %s; put tool data under \"meta\")", k, strings.Join(knownFields, ", "))
		}
		field[k] = vals[i]
	}
	for _, k := range []string{"candidate_id", "num_experts", "keep"} {
		if _, ok := field[k]; !ok {
			return c, invalid(line, "missing field %q", k)
		}
	}
	str := func(k string, dst *string) error {
		v, ok := field[k]
		if !ok {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return invalid(line, "%s: want a string, got %s", k, abbreviate(v))
		}
		return nil
	}
	for _, f := range []struct {
		k   string
		dst *string
	}{{"candidate_id", &c.ID}, {"model_type", &c.ModelType}, {"source", &c.Source}, {"method", &c.Method}} {
		if err := str(f.k, f.dst); err != nil {
			return c, err
		}
	}
	if err := checkID(c.ID); err != nil {
		return c, invalid(line, "candidate_id: %v", err)
	}
	n, err := integer(field["num_experts"])
	if err != nil || n < 1 || n > MaxExperts {
		return c, invalid(line, "num_experts: want an integer in [1, %d], got %s", MaxExperts, abbreviate(field["num_experts"]))
	}
	c.NumExperts = int(n)
	if c.Keep, err = layerMap(field["keep"], "keep", func(k string, v json.RawMessage) ([]int, error) {
		ids, err := intList(v)
		if err != nil {
			return nil, err
		}
		return ids, checkKeep(ids, c.NumExperts)
	}); err != nil {
		return c, invalid(line, "%v", err)
	}
	if len(c.Keep) == 0 {
		return c, invalid(line, "keep: no layers")
	}
	if v, ok := field["scores"]; ok {
		if c.Scores, err = layerMap(v, "scores", func(k string, v json.RawMessage) ([]float64, error) {
			return floatList(v)
		}); err != nil {
			return c, invalid(line, "%v", err)
		}
	}
	if v, ok := field["meta"]; ok {
		if t := bytes.TrimSpace(v); len(t) == 0 || t[0] != '{' {
			return c, invalid(line, "meta: want a JSON object, got %s", abbreviate(v))
		}
		c.Meta = slices.Clone(bytes.TrimSpace(v))
	}
	// Cross-field rules (scores cover keep's layers with num_experts
	// values) are Validate's.
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// layerMap decodes {"<layer>": value, …} with canonical decimal keys.
func layerMap[T any](data json.RawMessage, name string, value func(string, json.RawMessage) (T, error)) (map[int]T, error) {
	keys, vals, err := object(data)
	if err != nil {
		return nil, fmt.Errorf("%s: want an object mapping layer indices to lists: %v", name, err)
	}
	out := make(map[int]T, len(keys))
	for i, k := range keys {
		l, err := strconv.Atoi(k)
		if err != nil || l < 0 || l >= MaxLayers || strconv.Itoa(l) != k {
			return nil, fmt.Errorf("%s: key %q is not a layer index (a decimal integer in [0, %d) without leading zeros)", name, k, MaxLayers)
		}
		v, err := value(k, vals[i])
		if err != nil {
			return nil, fmt.Errorf("%s[%q]: %v", name, k, err)
		}
		out[l] = v
	}
	return out, nil
}

func integer(v json.RawMessage) (int64, error) {
	var n json.Number
	t := bytes.TrimSpace(v)
	if len(t) == 0 || t[0] == '"' {
		return 0, errors.New("not a number")
	}
	if err := json.Unmarshal(t, &n); err != nil {
		return 0, err
	}
	return n.Int64()
}

func intList(v json.RawMessage) ([]int, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil {
		return nil, fmt.Errorf("want a list of expert ids, got %s", abbreviate(v))
	}
	out := make([]int, len(raw))
	for i, r := range raw {
		n, err := integer(r)
		if err != nil || n < 0 || n > MaxExperts {
			return nil, fmt.Errorf("entry %d: want an expert id (a non-negative integer), got %s", i, abbreviate(r))
		}
		out[i] = int(n)
	}
	return out, nil
}

func floatList(v json.RawMessage) ([]float64, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil {
		return nil, fmt.Errorf("want a list of numbers, got %s", abbreviate(v))
	}
	out := make([]float64, len(raw))
	for i, r := range raw {
		var n json.Number
		t := bytes.TrimSpace(r)
		if len(t) == 0 || t[0] == '"' || json.Unmarshal(t, &n) != nil {
			return nil, fmt.Errorf("entry %d: want a number, got %s", i, abbreviate(r))
		}
		f, err := n.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("entry %d: %s is out of range", i, abbreviate(r))
		}
		out[i] = f
	}
	return out, nil
}

func abbreviate(v json.RawMessage) string {
	s := string(bytes.TrimSpace(v))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	if s == "" {
		s = "nothing"
	}
	return s
}

// MarshalJSON writes the candidate as one line's object, fields in the
// documented order and layers ascending.
func (c Candidate) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	str := func(k, v string) {
		js, _ := json.Marshal(v)
		fmt.Fprintf(&b, ",%q:%s", k, js)
	}
	id, _ := json.Marshal(c.ID)
	fmt.Fprintf(&b, `{"candidate_id":%s,"num_experts":%d`, id, c.NumExperts)
	if c.ModelType != "" {
		str("model_type", c.ModelType)
	}
	if c.Source != "" {
		str("source", c.Source)
	}
	if c.Method != "" {
		str("method", c.Method)
	}
	b.WriteString(`,"keep":{`)
	for i, l := range c.Layers() {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%d":[`, l)
		for j, e := range c.Keep[l] {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(e))
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	if len(c.Scores) > 0 {
		layers := make([]int, 0, len(c.Scores))
		for l := range c.Scores {
			layers = append(layers, l)
		}
		slices.Sort(layers)
		b.WriteString(`,"scores":{`)
		for i, l := range layers {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"%d":[`, l)
			for j, v := range c.Scores[l] {
				if j > 0 {
					b.WriteByte(',')
				}
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return nil, fmt.Errorf("pruneplan: candidate %q: scores[%d][%d] is %v", c.ID, l, j, v)
				}
				b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
			}
			b.WriteByte(']')
		}
		b.WriteByte('}')
	}
	if len(c.Meta) > 0 {
		var compact bytes.Buffer
		if err := json.Compact(&compact, c.Meta); err != nil {
			return nil, fmt.Errorf("pruneplan: candidate %q: meta: %w", c.ID, err)
		}
		b.WriteString(`,"meta":`)
		b.Write(compact.Bytes())
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Write validates the candidates and writes them as JSON Lines.
func Write(w io.Writer, cands ...Candidate) error {
	seen := map[string]bool{}
	for _, c := range cands {
		if err := c.Validate(); err != nil {
			return err
		}
		if seen[c.ID] {
			return fault.Mark(fmt.Errorf("%w: candidate_id %q appears twice", ErrInvalid, c.ID), fault.ErrIO)
		}
		seen[c.ID] = true
		js, err := c.MarshalJSON()
		if err != nil {
			return err
		}
		if _, err := w.Write(append(js, '\n')); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes a plan file atomically.
func WriteFile(path string, cands ...Candidate) error {
	return atomicfile.Write(path, 0o644, func(w io.Writer) error { return Write(w, cands...) })
}
