package engine

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStopper(t *testing.T) {
	tests := []struct {
		name   string
		stops  []string
		deltas []string
		shown  string
		hit    bool
	}{
		{"none", nil, []string{"ab", "cd"}, "abcd", false},
		{"across deltas", []string{"END"}, []string{"foo E", "N", "D bar"}, "foo ", true},
		{"held back then released", []string{"END"}, []string{"foo E", "x"}, "foo Ex", false},
		{"earliest wins", []string{"cd", "b"}, []string{"abcd"}, "a", true},
		{"prefix at the end flushed", []string{"stop"}, []string{"a st"}, "a st", false},
		{"unicode", []string{"é!"}, []string{"caf", "é", "!"}, "caf", true},
	}
	for _, tc := range tests {
		s := &stopper{stops: tc.stops}
		var out strings.Builder
		hit := false
		for i, d := range tc.deltas {
			var shown string
			if i == len(tc.deltas)-1 {
				shown, hit = s.push(d)
				if !hit {
					shown += s.flush("")
				}
			} else {
				shown, hit = s.push(d)
			}
			out.WriteString(shown)
			if hit {
				break
			}
		}
		require.Equal(t, tc.shown, out.String(), tc.name)
		require.Equal(t, tc.hit, hit, tc.name)
	}
}
