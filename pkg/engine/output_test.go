package engine

import (
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/sample"
	"github.com/stretchr/testify/require"
)

// letters decodes id i as the letter 'a'+i.
type letters struct{}

func (letters) Add(id int32) string { return string(rune('a' + id)) }
func (letters) Flush() string       { return "" }

func TestOutput(t *testing.T) {
	tests := []struct {
		name    string
		opts    OutputOptions
		ids     []int32
		pushed  int // tokens pushed before done
		streams string
		text    string
		reason  string
		tokens  int
	}{
		{"budget", OutputOptions{MaxTokens: 3}, []int32{0, 1, 2, 3}, 3, "abc", "abc", FinishLength, 3},
		{"eos not streamed", OutputOptions{MaxTokens: 9, EOS: map[int32]bool{25: true}}, []int32{0, 1, 25, 3}, 3, "ab", "ab", FinishStop, 2},
		{"stop string", OutputOptions{MaxTokens: 9, Stop: []string{"cd"}}, []int32{0, 1, 2, 3, 4}, 4, "ab", "ab", FinishStop, 4},
		{"held back released at the end", OutputOptions{MaxTokens: 3, Stop: []string{"cz"}}, []int32{0, 1, 2}, 3, "abc", "abc", FinishLength, 3},
		{"no decoder", OutputOptions{MaxTokens: 2}, []int32{5, 6}, 2, "", "", FinishLength, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "no decoder" {
				tc.opts.Decoder = letters{}
			}
			o := NewOutput(tc.opts)
			var streamed strings.Builder
			n := 0
			for _, id := range tc.ids {
				tk, emit, done := o.Push(sample.Result{Token: id})
				n++
				if emit {
					require.Equal(t, id, tk.ID)
					streamed.WriteString(tk.Text)
				}
				if done {
					break
				}
			}
			require.Equal(t, tc.pushed, n)
			streamed.WriteString(o.Finish())
			require.Equal(t, tc.streams, streamed.String())
			require.Equal(t, tc.text, o.Text())
			require.Equal(t, tc.reason, o.FinishReason())
			require.Len(t, o.Tokens(), tc.tokens)
			_, emit, done := o.Push(sample.Result{Token: 0})
			require.False(t, emit)
			require.True(t, done, "nothing after the end")
		})
	}
}
