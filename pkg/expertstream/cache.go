package expertstream

import (
	"errors"
	"fmt"
	"slices"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/moe"
)

// ErrCacheFull: every slot holds an expert that is in use or being read,
// so a load has nowhere to go (the budget is smaller than what one step
// pins; see Options.CacheBytes).
var ErrCacheFull = errors.New("expert cache full")

type state uint8

const (
	absent state = iota
	loading
	ready
)

// entry is one (layer, expert) of the sidecar.
type entry struct {
	id            int32
	layer, expert int
	state         state
	slot          int32
	pins          int32
	// last is the step of the last demand.
	last int64
	// spec: loaded by speculation and not demanded since.
	spec bool
	// done is closed when the current load finishes; err is its result.
	done chan struct{}
	err  error
	// corrupt is sticky: an expert whose bytes failed their checksum is
	// never served.
	corrupt error
	// verified: the expert's checksum was checked on an earlier read.
	verified bool
	// bound is the expert bound to the backend (nil until first use).
	bound *moe.Expert
	// counted is the step whose demand statistics already include it.
	counted int64
}

// counters are the cache's event counts (Stats adds I/O figures).
type counters struct {
	// demands counts layer demands (once per layer and step); missed
	// those with at least one miss, which make the layer wait for a read.
	demands, missed          int64
	requests, hits, misses   int64
	specHits, specReads      int64
	specWasted, evictions    int64
	demandReads, corruptions int64
}

// cache is the slot bookkeeping shared by the Store, the simulator and the
// adaptive policy's shadows: who occupies which slot, what the policy
// evicts, what speculation loads. It does no I/O and no locking (the Store
// holds its lock).
type cache struct {
	sp    *ids
	pol   policy
	slots int
	free  []int32
	owner []*entry
	byID  []*entry
	// entries[l] are MoE layer l's experts (nil for other layers).
	entries [][]*entry
	// next maps a MoE layer to the MoE layer after it (-1 for the last).
	next map[int]int
	now  int64
	// lastLayer detects a new forward step (a layer at or below the last
	// one seen).
	lastLayer int
	// observed is the (step, layer) whose demand was last shown to the
	// predictor and an observing policy.
	observedStep  int64
	observedLayer int
	pred          *predictor
	c             counters
	// sim: reads complete instantly (simulator, shadows): no channels.
	sim bool
	// held and loads are demand's scratch lists (loads is returned: the
	// caller uses it before its next demand).
	held, loads []*entry
}

// layer returns layer l's entries, nil when l has no routed experts.
func (c *cache) layer(l int) []*entry {
	if l < 0 || l >= len(c.entries) {
		return nil
	}
	return c.entries[l]
}

// newIDs numbers every (layer, expert) densely, layers ascending.
func newIDs(layers map[int]int) *ids {
	sp := &ids{base: map[int]int32{}, counts: layers}
	for l := range layers {
		sp.layers = append(sp.layers, l)
	}
	slices.Sort(sp.layers)
	for _, l := range sp.layers {
		sp.base[l] = int32(len(sp.layerOf))
		for range layers[l] {
			sp.layerOf = append(sp.layerOf, l)
		}
	}
	return sp
}

func newCache(p Policy, halfLife float64, slots int, layers map[int]int, speculate, sim bool) (*cache, error) {
	sp := newIDs(layers)
	pol, err := newPolicy(p, sp, slots, halfLife)
	if err != nil {
		return nil, err
	}
	return newCacheIDs(pol, slots, sp, speculate, sim), nil
}

func newCacheIDs(pol policy, slots int, sp *ids, speculate, sim bool) *cache {
	maxLayer := sp.layers[len(sp.layers)-1]
	c := &cache{sp: sp, pol: pol, slots: slots, owner: make([]*entry, slots), entries: make([][]*entry, maxLayer+1),
		next: map[int]int{}, lastLayer: -1, observedStep: -1, sim: sim}
	for i, l := range sp.layers {
		es := make([]*entry, sp.counts[l])
		for e := range es {
			x := &entry{id: sp.base[l] + int32(e), layer: l, expert: e, slot: -1, counted: -1, last: -1}
			es[e] = x
			c.byID = append(c.byID, x)
		}
		c.entries[l] = es
		c.next[l] = -1
		if i+1 < len(sp.layers) {
			c.next[l] = sp.layers[i+1]
		}
	}
	for i := slots - 1; i >= 0; i-- {
		c.free = append(c.free, int32(i))
	}
	if speculate {
		c.pred = newPredictor(sp.counts, c.next)
	}
	return c
}

// tick advances the step clock when layer starts a new forward step.
func (c *cache) tick(layer int) {
	if layer <= c.lastLayer || c.lastLayer < 0 {
		c.now++
	}
	c.lastLayer = layer
}

func (c *cache) evictable(id int32) bool {
	x := c.byID[id]
	return x.state == ready && x.pins == 0
}

// alloc finds a slot for x: a free one, or one the policy frees. spec
// loads only take a victim worth replacing. It returns -1 when nothing can
// be evicted now.
func (c *cache) alloc(x *entry, spec bool) int32 {
	if n := len(c.free); n > 0 {
		s := c.free[n-1]
		c.free = c.free[:n-1]
		return s
	}
	v := c.pol.victim(x.layer, c.now, c.evictable)
	if v < 0 {
		return -1
	}
	victim := c.byID[v]
	if spec && !c.worthSpeculating(victim) {
		return -1
	}
	s := victim.slot
	c.evict(victim)
	return s
}

// worthSpeculating: a guess may replace the victim the policy chose unless
// the victim is itself a guess (no churn between guesses) or was demanded
// in this step. Otherwise the victim is what the next demand miss would
// evict anyway, so a right guess only moves that eviction earlier and
// turns the miss into a hit, and a wrong one costs one eviction.
func (c *cache) worthSpeculating(victim *entry) bool {
	return !victim.spec && victim.last < c.now
}

func (c *cache) evict(x *entry) {
	c.pol.removed(x.id)
	c.owner[x.slot] = nil
	if x.spec {
		c.c.specWasted++
	}
	x.state, x.slot, x.spec, x.bound = absent, -1, false, nil
	c.c.evictions++
}

// place puts x into slot s, loading.
func (c *cache) place(x *entry, s int32, spec bool) {
	x.slot, x.state, x.spec = s, loading, spec
	x.err = nil
	if !c.sim {
		x.done = make(chan struct{})
	}
	c.owner[s] = x
	c.pol.inserted(x.id, c.now, spec)
	if spec {
		c.c.specReads++
	} else {
		c.c.demandReads++
	}
}

// drop returns x's slot after a failed load.
func (c *cache) drop(x *entry) {
	if x.slot < 0 {
		return
	}
	c.pol.removed(x.id)
	c.owner[x.slot] = nil
	c.free = append(c.free, x.slot)
	x.state, x.slot, x.spec, x.bound = absent, -1, false, nil
}

// access records a demand of x in this step (policy and statistics see
// each expert once per step, however many times a layer asks).
func (c *cache) access(x *entry) {
	c.pol.accessed(x.id, c.now)
	x.last = c.now
}

// demand records that layer needs experts now: it counts hits and misses
// (once per step), tells the policy, pins them when pin is set, and
// returns the entries that must be read, each already placed in a slot. A
// miss with no slot to take is returned in wait; the caller retries it
// once a load or a pin ends.
func (c *cache) demand(layer int, experts []int, pin bool) (loads, wait []*entry, err error) {
	es := c.layer(layer)
	for _, e := range experts {
		if e < 0 || e >= len(es) {
			return nil, nil, fault.Mark(fmt.Errorf("expert store: layer %d has no expert %d (of %d)", layer, e, len(es)), fault.ErrIO)
		}
		if x := es[e]; x.corrupt != nil {
			return nil, nil, x.corrupt
		}
	}
	if c.observedStep != c.now || c.observedLayer != layer {
		c.c.demands++
		for _, e := range experts {
			if x := es[e]; x.state == absent && x.counted != c.now {
				c.c.missed++
				break
			}
		}
	}
	held := c.held[:0]
	loads = c.loads[:0]
	for _, e := range experts {
		x := es[e]
		// Pinned at least while the rest is placed, so a later miss of
		// the same layer cannot evict an earlier one.
		x.pins++
		if !pin {
			held = append(held, x)
		}
		first := x.counted != c.now
		if first {
			x.counted = c.now
			c.c.requests++
			if x.state == absent {
				c.c.misses++
			} else {
				c.c.hits++
				if x.spec {
					c.c.specHits++
				}
				c.access(x)
			}
		}
		x.spec = false
		if x.state != absent {
			continue
		}
		s := c.alloc(x, false)
		if s < 0 {
			wait = append(wait, x)
			continue
		}
		c.place(x, s, false)
		c.access(x)
		loads = append(loads, x)
	}
	for _, x := range held {
		x.pins--
	}
	c.held, c.loads = held[:0], loads[:0]
	return loads, wait, nil
}

// observe shows layer's demand to the predictor and to an observing
// policy, once per layer and step. The Store calls it after starting the
// demand's reads, so the adaptive policy's shadow caches never delay them.
func (c *cache) observe(layer int, experts []int) {
	if c.observedStep == c.now && c.observedLayer == layer {
		return
	}
	c.observedStep, c.observedLayer = c.now, layer
	if c.pred != nil {
		c.pred.observe(layer, experts, c.now)
	}
	if o, ok := c.pol.(observer); ok {
		o.observe(layer, experts, c.now)
	}
}

// retry places a miss demand could not place: placed says it now needs
// its read started, ok false that there is still no slot.
func (c *cache) retry(x *entry) (placed, ok bool) {
	if x.state != absent {
		return false, true
	}
	s := c.alloc(x, false)
	if s < 0 {
		return false, false
	}
	c.place(x, s, false)
	c.access(x)
	return true, true
}

// speculate chooses loads for the MoE layer after layer from what layer
// just demanded, and places them.
func (c *cache) speculate(layer int, experts []int) []*entry {
	if c.pred == nil {
		return nil
	}
	nl := c.next[layer]
	if nl < 0 {
		return nil
	}
	return c.hint(nl, c.pred.predict(layer, experts))
}

// hint places guesses for layer (early routing, and speculate's
// predictions): speculative loads of the experts not held yet into slots
// worth replacing, until there is none. It returns the entries placed.
func (c *cache) hint(layer int, experts []int) []*entry {
	es := c.layer(layer)
	var out []*entry
	for _, e := range experts {
		if e < 0 || e >= len(es) {
			continue
		}
		x := es[e]
		if x.state != absent || x.corrupt != nil {
			continue
		}
		s := c.alloc(x, true)
		if s < 0 {
			break
		}
		c.place(x, s, true)
		out = append(out, x)
	}
	return out
}

// replay runs one access with instant reads (the simulator and the
// adaptive policy's shadows): demand, read, speculate, unpin.
func (c *cache) replay(layer int, experts []int) (stuck int) {
	c.tick(layer)
	es := c.layer(layer)
	loads, wait, err := c.demand(layer, experts, true)
	if err != nil {
		return len(experts)
	}
	c.observe(layer, experts)
	for _, x := range loads {
		x.state = ready
	}
	for _, x := range c.speculate(layer, experts) {
		x.state = ready
	}
	for _, e := range experts {
		es[e].pins--
	}
	return len(wait)
}

// resident counts the slots in use.
func (c *cache) resident() int { return c.slots - len(c.free) }
