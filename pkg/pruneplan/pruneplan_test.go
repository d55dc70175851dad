package pruneplan_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/pruneplan"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	plan := `{"candidate_id": "tiny_uniform_k6", "num_experts": 8, "keep": {"0": [0, 1, 2, 4, 5, 7], "2": [1, 2, 3, 4, 6, 7]}}

{"candidate_id":"tiny_reap_k4","num_experts":8,"model_type":"qwen3_moe","source":"./tiny","method":"reap","keep":{"10":[0,1,2,3],"2":[4,5,6,7]},"scores":{"2":[0,0,0,0,1,2,3,4.5e-3]},"meta":{"calibration":{"sha256":"ab"}}}
`
	p, err := pruneplan.Parse(strings.NewReader(plan))
	require.NoError(t, err)
	require.Equal(t, []string{"tiny_uniform_k6", "tiny_reap_k4"}, p.IDs())
	c, err := p.Find("tiny_reap_k4")
	require.NoError(t, err)
	require.Equal(t, 3, c.Line)
	require.Equal(t, 8, c.NumExperts)
	require.Equal(t, map[int][]int{2: {4, 5, 6, 7}, 10: {0, 1, 2, 3}}, c.Keep)
	require.Equal(t, []int{2, 10}, c.Layers())
	require.Equal(t, []int{0, 1, 2, 3}, c.Removed(2))
	require.Equal(t, map[int][]float64{2: {0, 0, 0, 0, 1, 2, 3, 4.5e-3}}, c.Scores)
	require.Equal(t, "reap", c.Method)
	require.JSONEq(t, `{"calibration":{"sha256":"ab"}}`, string(c.Meta))
	require.False(t, c.KeepsAll())

	_, err = p.Find("k5")
	require.ErrorIs(t, err, pruneplan.ErrUnknownCandidate)
	require.ErrorIs(t, err, fault.ErrUsage)
	require.Contains(t, err.Error(), `unknown candidate "k5": the plan has 2 candidate(s): "tiny_uniform_k6", "tiny_reap_k4"`)
}

// Every malformed plan is an error naming the line and the field.
func TestParseErrors(t *testing.T) {
	const ok = `{"candidate_id":"a","num_experts":4,"keep":{"0":[0,1]}}`
	tests := []struct {
		name, plan, want string
	}{
		{"empty", "", "no candidates"},
		{"blank lines only", "\n  \n", "no candidates"},
		{"not json", ok + "\nnope", "line 2: invalid character"},
		{"array", `[1]`, "line 1: not a JSON object"},
		{"trailing", ok + ` {}`, "line 1: trailing data"},
		{"missing keep", `{"candidate_id":"a","num_experts":4}`, `line 1: missing field "keep"`},
		{"missing id", `{"num_experts":4,"keep":{"0":[0]}}`, `missing field "candidate_id"`},
		{"unknown field", `{"candidate_id":"a","num_experts":4,"keeps":{"0":[0]},"keep":{"0":[0]}}`, `unknown field "keeps"`},
		{"duplicate key", `{"candidate_id":"a","candidate_id":"b","num_experts":4,"keep":{"0":[0]}}`, `key "candidate_id" appears twice`},
		{"duplicate layer", `{"candidate_id":"a","num_experts":4,"keep":{"0":[0],"0":[1]}}`, `keep: want an object mapping layer indices to lists: key "0" appears twice`},
		{"blank id", `{"candidate_id":" ","num_experts":4,"keep":{"0":[0]}}`, "candidate_id: empty"},
		{"id type", `{"candidate_id":7,"num_experts":4,"keep":{"0":[0]}}`, "candidate_id: want a string, got 7"},
		{"num_experts string", `{"candidate_id":"a","num_experts":"4","keep":{"0":[0]}}`, `num_experts: want an integer in [1, 1048576], got "4"`},
		{"num_experts fraction", `{"candidate_id":"a","num_experts":4.5,"keep":{"0":[0]}}`, "num_experts: want an integer"},
		{"num_experts zero", `{"candidate_id":"a","num_experts":0,"keep":{"0":[0]}}`, "num_experts: want an integer"},
		{"layer key", `{"candidate_id":"a","num_experts":4,"keep":{"01":[0]}}`, `keep: key "01" is not a layer index`},
		{"negative layer", `{"candidate_id":"a","num_experts":4,"keep":{"-1":[0]}}`, `keep: key "-1" is not a layer index`},
		{"no layers", `{"candidate_id":"a","num_experts":4,"keep":{}}`, "keep: no layers"},
		{"empty layer", `{"candidate_id":"a","num_experts":4,"keep":{"3":[]}}`, `keep["3"]: keeps no expert`},
		{"out of range", `{"candidate_id":"a","num_experts":4,"keep":{"0":[1,4]}}`, `keep["0"]: expert 4 is out of range: num_experts is 4, so ids run 0..3`},
		{"duplicated", `{"candidate_id":"a","num_experts":4,"keep":{"0":[1,1]}}`, `keep["0"]: expert 1 is listed twice`},
		{"unsorted", `{"candidate_id":"a","num_experts":4,"keep":{"0":[2,1]}}`, `keep["0"]: expert ids must be ascending, but 1 follows 2`},
		{"fraction id", `{"candidate_id":"a","num_experts":4,"keep":{"0":[1.0]}}`, `keep["0"]: entry 0: want an expert id`},
		{"negative id", `{"candidate_id":"a","num_experts":4,"keep":{"0":[-1]}}`, `keep["0"]: entry 0: want an expert id`},
		{"keep list type", `{"candidate_id":"a","num_experts":4,"keep":{"0":"all"}}`, `keep["0"]: want a list of expert ids, got "all"`},
		{"scores length", `{"candidate_id":"a","num_experts":4,"keep":{"0":[0]},"scores":{"0":[1,2]}}`, `scores["0"]: 2 scores for 4 experts`},
		{"scores layer", `{"candidate_id":"a","num_experts":2,"keep":{"0":[0]},"scores":{"1":[1,2]}}`, `scores["1"]: layer 1 is not in keep`},
		{"scores huge", `{"candidate_id":"a","num_experts":1,"keep":{"0":[0]},"scores":{"0":[1e999]}}`, `scores["0"]: entry 0: 1e999 is out of range`},
		{"meta type", `{"candidate_id":"a","num_experts":1,"keep":{"0":[0]},"meta":[1]}`, "meta: want a JSON object"},
		{"duplicate candidate", ok + "\n\n" + ok, `line 3: candidate_id "a" is already used on line 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pruneplan.Parse(strings.NewReader(tt.plan))
			require.Error(t, err)
			require.ErrorIs(t, err, pruneplan.ErrInvalid)
			require.ErrorIs(t, err, fault.ErrIO)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestLimits(t *testing.T) {
	long := `{"candidate_id":"a","num_experts":4,"keep":{"0":[0]},"meta":{"x":"` + strings.Repeat("y", pruneplan.MaxLineSize) + `"}}`
	_, err := pruneplan.Parse(strings.NewReader(long))
	require.ErrorIs(t, err, pruneplan.ErrInvalid)
	require.Contains(t, err.Error(), "line 1: longer than")
	_, err = pruneplan.Parse(strings.NewReader(`{"candidate_id":"` + strings.Repeat("x", 300) + `","num_experts":4,"keep":{"0":[0]}}`))
	require.ErrorContains(t, err, "candidate_id: longer than 256 bytes")
}

func TestWriteRoundTrip(t *testing.T) {
	a := pruneplan.KeepAll("k8", 8, []int{0, 2, 10})
	require.True(t, a.KeepsAll())
	b := pruneplan.Candidate{ID: "reap k2", NumExperts: 4, Method: "reap", ModelType: "qwen3_moe", Source: "org/x",
		Keep:   map[int][]int{0: {1, 3}, 2: {0, 2}, 10: {0, 1}},
		Scores: map[int][]float64{10: {0.5, 0.25, -1e-7, 3}},
		Meta:   json.RawMessage(`{ "seed": 3 }`)}
	path := filepath.Join(t.TempDir(), "plan.jsonl")
	require.NoError(t, pruneplan.WriteFile(path, a, b))
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	require.Len(t, lines, 2)
	require.Equal(t, `{"candidate_id":"reap k2","num_experts":4,"model_type":"qwen3_moe","source":"org/x","method":"reap","keep":{"0":[1,3],"2":[0,2],"10":[0,1]},"scores":{"10":[0.5,0.25,-1e-07,3]},"meta":{"seed":3}}`, lines[1])
	p, err := pruneplan.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, path, p.Path)
	a.Line, b.Line, b.Meta = 1, 2, json.RawMessage(`{"seed":3}`)
	require.Equal(t, []pruneplan.Candidate{a, b}, p.Candidates)

	bad := b
	bad.Keep = map[int][]int{0: {3, 1}}
	var buf bytes.Buffer
	require.ErrorIs(t, pruneplan.Write(&buf, bad), pruneplan.ErrInvalid)
	require.ErrorContains(t, pruneplan.Write(&buf, a, a), `candidate_id "k8" appears twice`)
	_, err = pruneplan.ReadFile(filepath.Join(t.TempDir(), "missing.jsonl"))
	require.ErrorIs(t, err, fault.ErrIO)
}
