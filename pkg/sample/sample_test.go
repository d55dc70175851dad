package sample

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func seed(v uint64) *uint64 { return &v }

func TestGreedy(t *testing.T) {
	s, err := New(Options{TopLogprobs: 3})
	require.NoError(t, err)
	logits := []float32{0.1, 2, -1, 2, 1.5}
	r, err := s.Sample(logits)
	require.NoError(t, err)
	require.Equal(t, int32(1), r.Token, "ties go to the lower id")
	lse := math.Log(math.Exp(0.1) + math.Exp(2) + math.Exp(-1) + math.Exp(2) + math.Exp(1.5))
	require.InDelta(t, 2-lse, r.Logprob, 1e-6)
	require.Len(t, r.Top, 3)
	require.Equal(t, []int32{1, 3, 4}, []int32{r.Top[0].Token, r.Top[1].Token, r.Top[2].Token})
	require.InDelta(t, 1.5-lse, r.Top[2].Logprob, 1e-6)
}

// The chosen token's logprob is computed only when asked for (it costs a
// pass of exp over the vocabulary).
func TestLogprobOnlyWhenAsked(t *testing.T) {
	logits := []float32{0.1, 2, -1, 2, 1.5}
	lse := math.Log(math.Exp(0.1) + math.Exp(2) + math.Exp(-1) + math.Exp(2) + math.Exp(1.5))
	for _, tc := range []struct {
		opts Options
		want float64
	}{
		{Options{}, 0},
		{Options{Logprobs: true}, 2 - lse},
		{Options{TopLogprobs: 1}, 2 - lse},
	} {
		s, err := New(tc.opts)
		require.NoError(t, err)
		r, err := s.Sample(logits)
		require.NoError(t, err)
		require.Equal(t, int32(1), r.Token)
		require.InDelta(t, tc.want, r.Logprob, 1e-6, "%+v", tc.opts)
	}
}

func TestSeedReproducible(t *testing.T) {
	logits := make([]float32, 50)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i)))
	}
	run := func(sd uint64) []int32 {
		s, err := New(Options{Temperature: 1, Seed: seed(sd)})
		require.NoError(t, err)
		var out []int32
		for i := 0; i < 30; i++ {
			r, err := s.Sample(logits)
			require.NoError(t, err)
			out = append(out, r.Token)
		}
		return out
	}
	require.Equal(t, run(7), run(7))
	require.NotEqual(t, run(7), run(8))
}

// freq draws n tokens and returns how often each id came up.
func freq(t *testing.T, opts Options, logits []float32, n int) map[int32]int {
	t.Helper()
	opts.Seed = seed(42)
	s, err := New(opts)
	require.NoError(t, err)
	out := map[int32]int{}
	for i := 0; i < n; i++ {
		s.seen, s.counts = map[int32]bool{}, map[int32]int{} // no penalties carry over
		r, err := s.Sample(logits)
		require.NoError(t, err)
		out[r.Token]++
	}
	return out
}

func TestTruncation(t *testing.T) {
	// Probabilities ∝ exp(logit): 0.5, 0.25, 0.125, 0.0625, 0.0625.
	l2 := float32(math.Ln2)
	logits := []float32{4 * l2, 3 * l2, 2 * l2, l2, l2}
	tests := []struct {
		name    string
		opts    Options
		allowed []int32
	}{
		{"top_k", Options{Temperature: 1, TopK: 2}, []int32{0, 1}},
		{"top_p", Options{Temperature: 1, TopP: 0.7}, []int32{0, 1}},
		{"top_p_exact_edge", Options{Temperature: 1, TopP: 0.75}, []int32{0, 1}},
		{"min_p", Options{Temperature: 1, MinP: 0.2}, []int32{0, 1, 2}},
		{"all", Options{Temperature: 1}, []int32{0, 1, 2, 3, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := freq(t, tc.opts, logits, 4000)
			for id := range got {
				require.Contains(t, tc.allowed, id, "%s drew %d", tc.name, id)
			}
			for _, id := range tc.allowed {
				require.Positive(t, got[id], "%s never drew %d", tc.name, id)
			}
		})
	}
	// Frequencies follow the renormalized distribution.
	got := freq(t, Options{Temperature: 1, TopK: 2}, logits, 6000)
	require.InDelta(t, 2.0/3, float64(got[0])/6000, 0.03)
}

func TestTemperature(t *testing.T) {
	logits := []float32{1, 0}
	hot := freq(t, Options{Temperature: 100}, logits, 4000)
	require.InDelta(t, 0.5, float64(hot[0])/4000, 0.05)
	cold := freq(t, Options{Temperature: 0.05}, logits, 1000)
	require.Equal(t, 1000, cold[0])
}

func TestPenalties(t *testing.T) {
	s, err := New(Options{RepetitionPenalty: 2})
	require.NoError(t, err)
	s.Prompt([]int32{0})
	r, err := s.Sample([]float32{3, 2})
	require.NoError(t, err)
	require.Equal(t, int32(1), r.Token, "3/2 < 2: the prompt token is penalized")
	r, err = s.Sample([]float32{-1, -1.5})
	require.NoError(t, err)
	require.Equal(t, int32(0), r.Token, "negative logits are multiplied: -2 vs -3")

	s, err = New(Options{PresencePenalty: 0.5, FrequencyPenalty: 0.3})
	require.NoError(t, err)
	s.Prompt([]int32{1}) // the prompt does not count for presence/frequency
	seq := []int32{}
	for i := 0; i < 4; i++ {
		r, err := s.Sample([]float32{1, 0.95, 0.1})
		require.NoError(t, err)
		seq = append(seq, r.Token)
	}
	// 0 (1.0) → 1 (0.95 > 1-0.8) → 0 (1-0.8=0.2 vs 0.95-0.8=0.15) → 1 (0.95-0.8 > 1-1.1).
	require.Equal(t, []int32{0, 1, 0, 1}, seq)
}

func TestValidate(t *testing.T) {
	for _, o := range []Options{
		{Temperature: -1}, {TopK: -1}, {TopP: 1.5}, {MinP: -0.1}, {RepetitionPenalty: -1}, {TopLogprobs: -2},
		{Temperature: math.NaN()},
	} {
		_, err := New(o)
		require.ErrorIs(t, err, ErrOptions, "%+v", o)
	}
	s, err := New(Options{Temperature: 1})
	require.NoError(t, err)
	_, err = s.Sample([]float32{float32(math.Inf(-1))})
	require.Error(t, err)
	_, err = s.Sample(nil)
	require.Error(t, err)
}
