package expertstream

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/maniac-ai/mach/pkg/moe"
)

// Access is one layer's demand in one forward step.
type Access struct {
	Step    int64
	Layer   int
	Experts []int
}

// Trace is a routing trace: every MoE layer's expert choice, step by step,
// as a store sees it. Policies are compared by replaying one (Simulate).
type Trace struct {
	// Experts is each MoE layer's expert count.
	Experts  map[int]int
	Accesses []Access
}

// Steps returns the number of forward steps in the trace.
func (t *Trace) Steps() int64 {
	if len(t.Accesses) == 0 {
		return 0
	}
	return t.Accesses[len(t.Accesses)-1].Step + 1
}

// Recorder is a moe.Store that records the routing trace of the store it
// wraps (from Prefetch, which the MoE block calls with each layer's whole
// choice).
type Recorder struct {
	moe.Store
	mu        sync.Mutex
	trace     Trace
	hints     []Access
	step      int64
	lastLayer int
}

// NewRecorder wraps s.
func NewRecorder(s moe.Store, layers []int) *Recorder {
	r := &Recorder{Store: s, lastLayer: -1, step: -1, trace: Trace{Experts: map[int]int{}}}
	for _, l := range layers {
		r.trace.Experts[l] = s.Experts(l)
	}
	return r
}

// Prefetch implements moe.Store, recording the demand: the block
// announces a layer's whole choice here before acquiring it (perhaps in
// runs).
func (r *Recorder) Prefetch(ctx context.Context, layer int, experts []int) {
	r.mu.Lock()
	if layer <= r.lastLayer || r.lastLayer < 0 {
		r.step++
	}
	r.lastLayer = layer
	r.trace.Accesses = append(r.trace.Accesses, Access{Step: r.step, Layer: layer, Experts: slices.Clone(experts)})
	r.mu.Unlock()
	r.Store.Prefetch(ctx, layer, experts)
}

// Hint implements moe.Hinter: it records the hint (Hints) and passes it on
// when the wrapped store takes hints.
func (r *Recorder) Hint(ctx context.Context, layer int, experts []int) {
	r.mu.Lock()
	r.hints = append(r.hints, Access{Step: r.step, Layer: layer, Experts: slices.Clone(experts)})
	r.mu.Unlock()
	if h, ok := r.Store.(moe.Hinter); ok {
		h.Hint(ctx, layer, experts)
	}
}

// HintPrecision is the share of hinted experts that their layer then
// demanded in the same step, over every hint recorded, and the number of
// hinted experts.
func (r *Recorder) HintPrecision() (float64, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	type key struct {
		step  int64
		layer int
	}
	demanded := map[key]map[int]bool{}
	for _, a := range r.trace.Accesses {
		m := demanded[key{a.Step, a.Layer}]
		if m == nil {
			m = map[int]bool{}
			demanded[key{a.Step, a.Layer}] = m
		}
		for _, e := range a.Experts {
			m[e] = true
		}
	}
	var n, used int
	for _, h := range r.hints {
		for _, e := range h.Experts {
			n++
			if demanded[key{h.Step, h.Layer}][e] {
				used++
			}
		}
	}
	if n == 0 {
		return 0, 0
	}
	return float64(used) / float64(n), n
}

// Ready implements moe.Streamer: the wrapped store's answer, or all of
// them for a store that never waits.
func (r *Recorder) Ready(layer int, experts []int) int {
	if s, ok := r.Store.(moe.Streamer); ok {
		return s.Ready(layer, experts)
	}
	return len(experts)
}

// Trace returns a copy of what was recorded.
func (r *Recorder) Trace() *Trace {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := &Trace{Experts: map[int]int{}, Accesses: slices.Clone(r.trace.Accesses)}
	for k, v := range r.trace.Experts {
		t.Experts[k] = v
	}
	return t
}

// SimOptions configure a replay.
type SimOptions struct {
	Policy Policy
	// Slots is the cache size in experts; it must hold one step's largest
	// demand of a layer.
	Slots    int
	HalfLife float64
	// Speculate enables the next-layer prefetch; Threshold is its
	// probability cut (default DefaultSpecThreshold).
	Speculate bool
	Threshold float64
}

// SimResult counts what a replay did.
type SimResult struct {
	// Demands counts layer demands; Missed those with at least one miss
	// (the layer waits for a read).
	Demands, Missed        int64
	Requests, Hits, Misses int64
	// SpecReads were speculative loads; SpecHits of them were demanded
	// before eviction, SpecWasted evicted unused.
	SpecReads, SpecHits, SpecWasted int64
	Evictions                       int64
}

// HitRate is Hits / Requests.
func (r SimResult) HitRate() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.Hits) / float64(r.Requests)
}

// Reads is every expert read (demand misses and speculative loads).
func (r SimResult) Reads() int64 { return r.Misses + r.SpecReads }

// Simulate replays t through the store's own cache logic with instant
// reads: the hit rate a policy would get on this routing.
func Simulate(t *Trace, o SimOptions) (SimResult, error) {
	c, err := newCache(o.Policy, o.HalfLife, o.Slots, t.Experts, o.Speculate, true)
	if err != nil {
		return SimResult{}, err
	}
	if c.pred != nil && o.Threshold > 0 {
		c.pred.threshold = o.Threshold
	}
	for _, a := range t.Accesses {
		for _, e := range a.Experts {
			if e < 0 || e >= t.Experts[a.Layer] {
				return SimResult{}, fmt.Errorf("trace step %d: layer %d has no expert %d", a.Step, a.Layer, e)
			}
		}
		if stuck := c.replay(a.Layer, a.Experts); stuck > 0 {
			return SimResult{}, fmt.Errorf("%w: %d slots cannot hold layer %d's %d experts of step %d", ErrCacheFull, o.Slots, a.Layer, len(a.Experts), a.Step)
		}
	}
	return SimResult{
		Demands: c.c.demands, Missed: c.c.missed,
		Requests: c.c.requests, Hits: c.c.hits, Misses: c.c.misses,
		SpecReads: c.c.specReads, SpecHits: c.c.specHits, SpecWasted: c.c.specWasted, Evictions: c.c.evictions,
	}, nil
}
