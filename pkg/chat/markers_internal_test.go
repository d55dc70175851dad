package chat

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// heldSuffix skips work unless a '<' is among the last 32 bytes: every
// marker must start with '<' and be at most 32 bytes long.
func TestMarkerShape(t *testing.T) {
	var all []string
	for _, s := range tagSpecs {
		all = append(all, s.thinkOpen...)
		all = append(all, s.thinkClose...)
		all = append(all, s.toolOpen...)
		all = append(all, s.ignore...)
		for _, c := range s.toolClose {
			all = append(all, c...)
		}
	}
	all = append(all, harmonyTerminators...)
	all = append(all, harmonyStarts...)
	all = append(all, hrMessage)
	for _, m := range all {
		require.True(t, strings.HasPrefix(m, "<"), m)
		require.LessOrEqual(t, len(m), 32, m)
	}
}
