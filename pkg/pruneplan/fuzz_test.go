package pruneplan_test

import (
	"bytes"
	"testing"

	"github.com/maniac-ai/mach/pkg/pruneplan"
	"github.com/stretchr/testify/require"
)

// FuzzParse: any input is either rejected with an error or parses to
// candidates that write and re-parse to the same values. The seed corpus
// is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"candidate_id":"a","num_experts":4,"keep":{"0":[0,1]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := pruneplan.Parse(bytes.NewReader(data))
		if err != nil {
			require.ErrorIs(t, err, pruneplan.ErrInvalid)
			return
		}
		var buf bytes.Buffer
		require.NoError(t, pruneplan.Write(&buf, p.Candidates...))
		q, err := pruneplan.Parse(&buf)
		require.NoError(t, err)
		require.Len(t, q.Candidates, len(p.Candidates))
		for i := range p.Candidates {
			a, b := p.Candidates[i], q.Candidates[i]
			require.Equal(t, a.ID, b.ID)
			require.Equal(t, a.NumExperts, b.NumExperts)
			require.Equal(t, a.Keep, b.Keep)
			require.Equal(t, a.Scores, b.Scores)
			require.Equal(t, a.ModelType+a.Source+a.Method, b.ModelType+b.Source+b.Method)
		}
	})
}
