package expertstream

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Policy names an eviction policy.
type Policy string

// The eviction policies.
const (
	// LayerLRU is the published baseline: every MoE layer gets an equal
	// share of the slots and evicts its least recently used expert.
	LayerLRU Policy = "layer-lru"
	// LRU is one least-recently-used order over every layer's experts.
	LRU Policy = "lru"
	// LRFU ranks experts by their decayed access count (CRF, Lee et al.
	// 2001): every access adds 1 and the sum halves every HalfLife forward
	// steps, over one pool shared by all layers. It keeps experts a layer
	// returns to often through bursts of one-off picks that push them out
	// of an LRU, and lets layers whose routing repeats more hold more of
	// the cache. Measured against LayerLRU in the streaming benchmark.
	LRFU Policy = "lrfu"
)

// Policies lists the policies, baseline first.
func Policies() []Policy { return []Policy{LayerLRU, LRU, LRFU} }

// ParsePolicy parses a policy name.
func ParsePolicy(s string) (Policy, error) {
	for _, p := range Policies() {
		if string(p) == s {
			return p, nil
		}
	}
	names := make([]string, 0, 3)
	for _, p := range Policies() {
		names = append(names, string(p))
	}
	return "", fmt.Errorf("unknown eviction policy %q (want %s)", s, strings.Join(names, ", "))
}

// DefaultHalfLife is LRFU's half-life in forward steps (tokens when
// decoding one sequence), chosen on the routing traces of
// make bench-streaming.
const DefaultHalfLife = 8

// item is what a policy knows of one cached expert; the store embeds one
// in each entry and the simulator keeps one per (layer, expert).
type item struct {
	layer, expert int
	// LRU links.
	prev, next *item
	// LRFU: key = log2(crf at last) + λ·last orders items by their CRF
	// at any later time, so it never needs updating between accesses.
	key  float64
	last int64
	// pos is the item's index in the policy's resident slice (-1 when not
	// resident).
	pos int
}

// policy decides which resident expert a load evicts. Times are forward
// steps. Callers hold the store's lock.
type policy interface {
	// inserted: it now occupies a slot; spec marks a speculative load,
	// which ranks below anything demanded.
	inserted(it *item, now int64, spec bool)
	// accessed: a layer demanded it (a hit, or the miss just inserted).
	accessed(it *item, now int64)
	removed(it *item)
	// victim returns the resident item to evict to make room in layer,
	// among those evictable allows, or nil.
	victim(layer int, now int64, evictable func(*item) bool) *item
}

func newPolicy(p Policy, layers []int, slots int, halfLife float64) (policy, error) {
	switch p {
	case LayerLRU:
		return newLayerLRU(layers, slots), nil
	case LRU:
		return &lruPolicy{}, nil
	case LRFU:
		if halfLife <= 0 {
			halfLife = DefaultHalfLife
		}
		return &lrfuPolicy{lambda: 1 / halfLife}, nil
	}
	return nil, fmt.Errorf("unknown eviction policy %q", p)
}

// list is an intrusive doubly linked list, most recent at the head.
type list struct {
	head, tail *item
	n          int
}

func (l *list) pushFront(it *item) {
	it.prev, it.next = nil, l.head
	if l.head != nil {
		l.head.prev = it
	} else {
		l.tail = it
	}
	l.head = it
	l.n++
}

func (l *list) remove(it *item) {
	if it.prev != nil {
		it.prev.next = it.next
	} else {
		l.head = it.next
	}
	if it.next != nil {
		it.next.prev = it.prev
	} else {
		l.tail = it.prev
	}
	it.prev, it.next = nil, nil
	l.n--
}

// oldest returns the least recent evictable item.
func (l *list) oldest(evictable func(*item) bool) *item {
	for it := l.tail; it != nil; it = it.prev {
		if evictable(it) {
			return it
		}
	}
	return nil
}

type lruPolicy struct{ l list }

func (p *lruPolicy) inserted(it *item, _ int64, spec bool) {
	if spec {
		// A guess goes to the cold end: evicted first unless demanded.
		it.prev, it.next = p.l.tail, nil
		if p.l.tail != nil {
			p.l.tail.next = it
		} else {
			p.l.head = it
		}
		p.l.tail = it
		p.l.n++
		return
	}
	p.l.pushFront(it)
}

func (p *lruPolicy) accessed(it *item, _ int64) {
	p.l.remove(it)
	p.l.pushFront(it)
}

func (p *lruPolicy) removed(it *item) { p.l.remove(it) }

func (p *lruPolicy) victim(_ int, _ int64, evictable func(*item) bool) *item {
	return p.l.oldest(evictable)
}

// layerLRU partitions the slots equally between layers, each with its own
// LRU order. A layer under its share takes a slot from the layer furthest
// over its share (only possible while the cache fills, or after a layer
// needed more than its share at once).
type layerLRU struct {
	lists map[int]*list
	quota int
}

func newLayerLRU(layers []int, slots int) *layerLRU {
	p := &layerLRU{lists: map[int]*list{}, quota: max(1, slots/max(1, len(layers)))}
	for _, l := range layers {
		p.lists[l] = &list{}
	}
	return p
}

func (p *layerLRU) list(layer int) *list {
	l := p.lists[layer]
	if l == nil {
		l = &list{}
		p.lists[layer] = l
	}
	return l
}

func (p *layerLRU) inserted(it *item, _ int64, spec bool) {
	l := p.list(it.layer)
	if spec {
		it.prev, it.next = l.tail, nil
		if l.tail != nil {
			l.tail.next = it
		} else {
			l.head = it
		}
		l.tail = it
		l.n++
		return
	}
	l.pushFront(it)
}

func (p *layerLRU) accessed(it *item, _ int64) {
	l := p.list(it.layer)
	l.remove(it)
	l.pushFront(it)
}

func (p *layerLRU) removed(it *item) { p.list(it.layer).remove(it) }

func (p *layerLRU) victim(layer int, _ int64, evictable func(*item) bool) *item {
	own := p.list(layer)
	if own.n >= p.quota {
		if it := own.oldest(evictable); it != nil {
			return it
		}
	}
	// Take from the layers furthest over their share first.
	keys := make([]int, 0, len(p.lists))
	for k := range p.lists {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b int) int { return p.lists[b].n - p.lists[a].n })
	for _, k := range keys {
		if k == layer && own.n < p.quota {
			continue
		}
		if it := p.lists[k].oldest(evictable); it != nil {
			return it
		}
	}
	return own.oldest(evictable)
}

// lrfuPolicy keeps the resident items in a slice and scans it for the
// smallest key: a miss costs O(slots) comparisons, microseconds next to
// the read it triggers.
type lrfuPolicy struct {
	lambda   float64 // 1/half-life, in steps
	resident []*item
}

// specKey ranks a speculative load: the CRF of one access made this long
// ago, so a guess never outranks an expert demanded since.
const specAge = 4

func (p *lrfuPolicy) inserted(it *item, now int64, spec bool) {
	it.pos = len(p.resident)
	p.resident = append(p.resident, it)
	it.last = now
	it.key = math.Inf(-1) // CRF 0: nothing accessed yet
	if spec {
		it.key = p.lambda * float64(now-specAge)
	}
}

func (p *lrfuPolicy) accessed(it *item, now int64) {
	// crf(now) = 1 + crf(last)·2^(-λ(now-last)); in log2 with the λ·t
	// offset folded in: key = log2(crf(now)) + λ·now.
	prev := it.key - p.lambda*float64(now) // log2(crf(last)) - λ(now-last)
	crf := 1 + math.Exp2(prev)
	if math.IsInf(prev, -1) {
		crf = 1
	}
	it.key = math.Log2(crf) + p.lambda*float64(now)
	it.last = now
}

func (p *lrfuPolicy) removed(it *item) {
	i := it.pos
	last := len(p.resident) - 1
	p.resident[i] = p.resident[last]
	p.resident[i].pos = i
	p.resident = p.resident[:last]
	it.pos = -1
}

func (p *lrfuPolicy) victim(_ int, _ int64, evictable func(*item) bool) *item {
	var best *item
	for _, it := range p.resident {
		if (best == nil || it.key < best.key || (it.key == best.key && it.last < best.last)) && evictable(it) {
			best = it
		}
	}
	return best
}
