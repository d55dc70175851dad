// Package sample picks the next token from a model's logits: greedy or
// temperature sampling with top-k, top-p (nucleus) and min-p truncation,
// repetition / presence / frequency penalties, a seed for reproducible
// runs, and the log-probabilities of the chosen and the most likely tokens.
//
// The order of processing is: penalties, temperature, top-k, top-p, min-p,
// then a draw. Log-probabilities describe the model's own distribution (the
// log-softmax of the raw logits, before penalties, temperature and
// truncation), as the OpenAI API and vLLM report them by default.
package sample

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Options configure a Sampler. The zero value is greedy decoding.
type Options struct {
	// Temperature divides the logits; 0 (or less) means greedy.
	Temperature float64
	// TopK keeps the K most likely tokens (0 = off).
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches TopP (0 or 1 = off).
	TopP float64
	// MinP drops tokens less likely than MinP × the most likely one (0 = off).
	MinP float64
	// RepetitionPenalty (> 1 discourages repeats; 0 or 1 = off) divides the
	// positive logits and multiplies the negative logits of every token in
	// the prompt or the output so far (Hugging Face's rule).
	RepetitionPenalty float64
	// PresencePenalty and FrequencyPenalty subtract p + f·count from the
	// logit of each token already generated (OpenAI's rule).
	PresencePenalty  float64
	FrequencyPenalty float64
	// Seed makes sampling reproducible; nil draws a seed from the clock.
	Seed *uint64
	// Logprobs reports the chosen token's log-probability in
	// Result.Logprob. It costs a pass of exp over the vocabulary per token,
	// so it is off unless asked for; TopLogprobs > 0 implies it.
	Logprobs bool
	// TopLogprobs is how many of the most likely tokens to report with
	// their log-probabilities (0 = none).
	TopLogprobs int
}

// ErrOptions is wrapped by errors about invalid options.
var ErrOptions = errors.New("invalid sampling options")

// Validate checks the ranges.
func (o Options) Validate() error {
	switch {
	case o.Temperature < 0 || math.IsNaN(o.Temperature):
		return fmt.Errorf("%w: temperature %g must be ≥ 0", ErrOptions, o.Temperature)
	case o.TopK < 0:
		return fmt.Errorf("%w: top-k %d must be ≥ 0", ErrOptions, o.TopK)
	case o.TopP < 0 || o.TopP > 1 || math.IsNaN(o.TopP):
		return fmt.Errorf("%w: top-p %g must be in [0, 1]", ErrOptions, o.TopP)
	case o.MinP < 0 || o.MinP > 1 || math.IsNaN(o.MinP):
		return fmt.Errorf("%w: min-p %g must be in [0, 1]", ErrOptions, o.MinP)
	case o.RepetitionPenalty < 0 || math.IsNaN(o.RepetitionPenalty):
		return fmt.Errorf("%w: repetition penalty %g must be ≥ 0", ErrOptions, o.RepetitionPenalty)
	case o.TopLogprobs < 0:
		return fmt.Errorf("%w: top logprobs %d must be ≥ 0", ErrOptions, o.TopLogprobs)
	}
	return nil
}

// Greedy reports whether the options pick the most likely token.
func (o Options) Greedy() bool { return o.Temperature <= 0 }

// TokenLogprob is a token with its log-probability.
type TokenLogprob struct {
	Token   int32
	Logprob float32
}

// Result is one sampling decision.
type Result struct {
	Token int32
	// Logprob is the chosen token's log-probability under the model (0
	// unless Options.Logprobs or Options.TopLogprobs asks for it).
	Logprob float32
	// Top holds the Options.TopLogprobs most likely tokens, most likely
	// first.
	Top []TokenLogprob
}

// Sampler draws tokens for one sequence. It remembers the prompt and the
// tokens it produced for the penalties. It is not safe for concurrent use.
type Sampler struct {
	opts   Options
	rng    *rand.Rand
	seen   map[int32]bool // prompt and output, for the repetition penalty
	counts map[int32]int  // output only, for presence and frequency
	work   []float32
	cands  candHeap
}

// New returns a Sampler; the options must be valid.
func New(opts Options) (*Sampler, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	seed := uint64(time.Now().UnixNano())
	if opts.Seed != nil {
		seed = *opts.Seed
	}
	return &Sampler{
		opts:   opts,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		seen:   map[int32]bool{},
		counts: map[int32]int{},
	}, nil
}

// Prompt records prompt tokens (they count for the repetition penalty).
func (s *Sampler) Prompt(ids []int32) {
	for _, id := range ids {
		s.seen[id] = true
	}
}

// Accept records a token that was appended to the sequence without being
// sampled here (e.g. forced).
func (s *Sampler) Accept(id int32) {
	s.seen[id] = true
	s.counts[id]++
}

// Sample picks the next token from logits and records it.
func (s *Sampler) Sample(logits []float32) (Result, error) {
	if len(logits) == 0 {
		return Result{}, errors.New("sample: empty logits")
	}
	var res Result
	if s.opts.TopLogprobs > 0 {
		res.Top = topLogprobs(logits, s.opts.TopLogprobs)
	}
	w := s.penalized(logits)
	if s.opts.Greedy() {
		res.Token = argmax(w)
	} else {
		id, err := s.draw(w)
		if err != nil {
			return Result{}, err
		}
		res.Token = id
	}
	if s.opts.Logprobs || s.opts.TopLogprobs > 0 {
		res.Logprob = logSoftmaxAt(logits, res.Token)
	}
	s.Accept(res.Token)
	return res, nil
}

// penalized returns the logits after the penalties, in s.work.
func (s *Sampler) penalized(logits []float32) []float32 {
	s.work = append(s.work[:0], logits...)
	w := s.work
	if rp := float32(s.opts.RepetitionPenalty); rp != 0 && rp != 1 {
		for id := range s.seen {
			if int(id) < len(w) && id >= 0 {
				if w[id] > 0 {
					w[id] /= rp
				} else {
					w[id] *= rp
				}
			}
		}
	}
	if s.opts.PresencePenalty != 0 || s.opts.FrequencyPenalty != 0 {
		for id, n := range s.counts {
			if int(id) < len(w) && id >= 0 {
				w[id] -= float32(s.opts.PresencePenalty + s.opts.FrequencyPenalty*float64(n))
			}
		}
	}
	return w
}

func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] || (math.IsNaN(float64(x[best])) && !math.IsNaN(float64(v))) {
			best = i
		}
	}
	return int32(best)
}

// draw samples from softmax(w/T) truncated by top-k, top-p and min-p. The
// candidates come off a max-heap in order, so truncation costs
// O(V + k·log V) rather than a full sort of the vocabulary.
func (s *Sampler) draw(w []float32) (int32, error) {
	t := float32(s.opts.Temperature)
	s.cands = s.cands[:0]
	for i, v := range w {
		if !math.IsInf(float64(v), -1) && !math.IsNaN(float64(v)) {
			s.cands = append(s.cands, cand{id: int32(i), logit: v / t})
		}
	}
	if len(s.cands) == 0 {
		return 0, errors.New("sample: every logit is -inf or NaN")
	}
	heap.Init(&s.cands)
	maxLogit := s.cands[0].logit
	// Unnormalized probabilities relative to the best token.
	var total float64
	for _, c := range s.cands {
		total += math.Exp(float64(c.logit - maxLogit))
	}
	k := len(s.cands)
	if s.opts.TopK > 0 {
		k = min(k, s.opts.TopK)
	}
	topP := s.opts.TopP
	if topP <= 0 {
		topP = 1
	}
	var kept []cand
	var mass float64
	for len(kept) < k && s.cands.Len() > 0 {
		c := heap.Pop(&s.cands).(cand)
		p := math.Exp(float64(c.logit - maxLogit))
		if s.opts.MinP > 0 && p < s.opts.MinP {
			break // p relative to the best token is below min-p
		}
		kept = append(kept, c)
		mass += p
		if topP < 1 && mass/total >= topP {
			break
		}
	}
	u := s.rng.Float64() * mass
	var acc float64
	for _, c := range kept {
		acc += math.Exp(float64(c.logit - maxLogit))
		if u < acc {
			return c.id, nil
		}
	}
	return kept[len(kept)-1].id, nil
}

type cand struct {
	id    int32
	logit float32
}

// candHeap is a max-heap by logit; ties pop the lower token id first.
type candHeap []cand

func (h candHeap) Len() int { return len(h) }
func (h candHeap) Less(i, j int) bool {
	if h[i].logit != h[j].logit {
		return h[i].logit > h[j].logit
	}
	return h[i].id < h[j].id
}
func (h candHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *candHeap) Push(x any)   { *h = append(*h, x.(cand)) }
func (h *candHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// logSumExp returns log Σ exp(x) (f64).
func logSumExp(x []float32) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s)
}

func logSoftmaxAt(x []float32, id int32) float32 {
	return float32(float64(x[id]) - logSumExp(x))
}

func topLogprobs(x []float32, n int) []TokenLogprob {
	lse := logSumExp(x)
	h := make(candHeap, len(x))
	for i, v := range x {
		h[i] = cand{id: int32(i), logit: v}
	}
	heap.Init(&h)
	out := make([]TokenLogprob, 0, min(n, len(x)))
	for len(out) < n && h.Len() > 0 {
		c := heap.Pop(&h).(cand)
		out = append(out, TokenLogprob{Token: c.id, Logprob: float32(float64(c.logit) - lse)})
	}
	return out
}
