package expertstream

import (
	"fmt"
	"math"
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
	// steps, over one pool shared by all layers.
	LRFU Policy = "lrfu"
	// Adaptive replays the live demand through shadow caches (metadata
	// only) of LayerLRU, LRU and LRFU at half-lives 2 to 32 steps, and
	// evicts the way the one with the most hits lately would. Which of
	// those wins depends on the model and the cache size (recency when
	// topics shift, frequency when a few experts dominate), so following
	// the best keeps the hit rate at or above the baseline's on every
	// trace measured (make bench-streaming).
	Adaptive Policy = "adaptive"
)

// Policies lists the policies, baseline first.
func Policies() []Policy { return []Policy{LayerLRU, LRU, LRFU, Adaptive} }

// ParsePolicy parses a policy name.
func ParsePolicy(s string) (Policy, error) {
	var names []string
	for _, p := range Policies() {
		if string(p) == s {
			return p, nil
		}
		names = append(names, string(p))
	}
	return "", fmt.Errorf("unknown eviction policy %q (want %s)", s, strings.Join(names, ", "))
}

// DefaultHalfLife is LRFU's half-life in forward steps (tokens when
// decoding one sequence).
const DefaultHalfLife = 4

// specAge ranks a speculative load like one access made this many steps
// ago, so a guess never outranks an expert demanded since.
const specAge = 4

// policy decides which resident expert a load evicts. Experts are dense
// ids (see cache); times are forward steps. Callers hold the store's lock.
type policy interface {
	// inserted: id now occupies a slot; spec marks a speculative load,
	// which ranks below anything demanded.
	inserted(id int32, now int64, spec bool)
	// accessed: a layer demanded id (a hit, or the miss just inserted),
	// once per step.
	accessed(id int32, now int64)
	removed(id int32)
	// victim returns the resident id to evict to make room in layer,
	// among those evictable allows, or -1.
	victim(layer int, now int64, evictable func(int32) bool) int32
}

// observer is a policy that also watches every layer's demand (once per
// layer and step), hits included.
type observer interface {
	observe(layer int, experts []int, now int64)
}

// ids describes the id space: layerOf[id] is the MoE layer of id, base[l]
// the first id of layer l.
type ids struct {
	layerOf []int
	base    map[int]int32
	layers  []int
	counts  map[int]int
}

func newPolicy(p Policy, sp *ids, slots int, halfLife float64) (policy, error) {
	switch p {
	case LayerLRU:
		return newLayerLRU(sp, slots), nil
	case LRU:
		return newLRU(len(sp.layerOf)), nil
	case LRFU:
		if halfLife <= 0 {
			halfLife = DefaultHalfLife
		}
		return newLRFU(len(sp.layerOf), halfLife), nil
	case Adaptive:
		return newAdaptive(sp, slots), nil
	}
	return nil, fmt.Errorf("unknown eviction policy %q", p)
}

// links is an intrusive doubly linked list over ids, most recent at the
// head; -1 ends it.
type links struct {
	prev, next []int32
}

func newLinks(n int) links {
	l := links{prev: make([]int32, n), next: make([]int32, n)}
	for i := range l.prev {
		l.prev[i], l.next[i] = -1, -1
	}
	return l
}

type list struct {
	head, tail int32
	n          int
}

func newList() list { return list{head: -1, tail: -1} }

func (k *links) pushFront(l *list, id int32) {
	k.prev[id], k.next[id] = -1, l.head
	if l.head >= 0 {
		k.prev[l.head] = id
	} else {
		l.tail = id
	}
	l.head = id
	l.n++
}

func (k *links) pushBack(l *list, id int32) {
	k.prev[id], k.next[id] = l.tail, -1
	if l.tail >= 0 {
		k.next[l.tail] = id
	} else {
		l.head = id
	}
	l.tail = id
	l.n++
}

func (k *links) remove(l *list, id int32) {
	p, n := k.prev[id], k.next[id]
	if p >= 0 {
		k.next[p] = n
	} else {
		l.head = n
	}
	if n >= 0 {
		k.prev[n] = p
	} else {
		l.tail = p
	}
	k.prev[id], k.next[id] = -1, -1
	l.n--
}

// oldest returns the least recent evictable id, or -1.
func (k *links) oldest(l *list, evictable func(int32) bool) int32 {
	for id := l.tail; id >= 0; id = k.prev[id] {
		if evictable(id) {
			return id
		}
	}
	return -1
}

type lruPolicy struct {
	links
	l list
}

func newLRU(n int) *lruPolicy { return &lruPolicy{links: newLinks(n), l: newList()} }

func (p *lruPolicy) inserted(id int32, _ int64, spec bool) {
	if spec {
		p.pushBack(&p.l, id) // a guess goes to the cold end
		return
	}
	p.pushFront(&p.l, id)
}

func (p *lruPolicy) accessed(id int32, _ int64) {
	p.remove(&p.l, id)
	p.pushFront(&p.l, id)
}

func (p *lruPolicy) removed(id int32) { p.remove(&p.l, id) }

func (p *lruPolicy) victim(_ int, _ int64, evictable func(int32) bool) int32 {
	return p.oldest(&p.l, evictable)
}

// layerLRU partitions the slots equally between layers, each with its own
// LRU order. A layer under its share takes a slot from the layer furthest
// over its share (only possible while the cache fills, or after a layer
// needed more than its share at once).
type layerLRU struct {
	links
	sp    *ids
	lists map[int]*list
	quota int
}

func newLayerLRU(sp *ids, slots int) *layerLRU {
	p := &layerLRU{links: newLinks(len(sp.layerOf)), sp: sp, lists: map[int]*list{}, quota: max(1, slots/max(1, len(sp.layers)))}
	for _, l := range sp.layers {
		ls := newList()
		p.lists[l] = &ls
	}
	return p
}

func (p *layerLRU) inserted(id int32, _ int64, spec bool) {
	l := p.lists[p.sp.layerOf[id]]
	if spec {
		p.pushBack(l, id)
		return
	}
	p.pushFront(l, id)
}

func (p *layerLRU) accessed(id int32, _ int64) {
	l := p.lists[p.sp.layerOf[id]]
	p.remove(l, id)
	p.pushFront(l, id)
}

func (p *layerLRU) removed(id int32) { p.remove(p.lists[p.sp.layerOf[id]], id) }

func (p *layerLRU) victim(layer int, _ int64, evictable func(int32) bool) int32 {
	own := p.lists[layer]
	if own.n >= p.quota {
		if id := p.oldest(own, evictable); id >= 0 {
			return id
		}
	}
	// Take from the layer furthest over its share (ties: lowest index).
	for {
		best := -1
		for _, l := range p.sp.layers {
			ls := p.lists[l]
			if (l == layer && own.n < p.quota) || ls.n == 0 {
				continue
			}
			if best < 0 || ls.n > p.lists[best].n {
				best = l
			}
		}
		if best < 0 {
			return p.oldest(own, evictable)
		}
		if id := p.oldest(p.lists[best], evictable); id >= 0 {
			return id
		}
		// Nothing evictable there: try the others, then give up.
		for _, l := range p.sp.layers {
			if id := p.oldest(p.lists[l], evictable); id >= 0 {
				return id
			}
		}
		return -1
	}
}

// lrfuPolicy keeps the resident ids in a binary min-heap on their keys, so
// a victim is found in O(1) and an access costs O(log slots); only when
// the smallest key is pinned or still being read does it scan.
type lrfuPolicy struct {
	lambda float64 // 1/half-life, in steps
	key    []float64
	last   []int64
	pos    []int32 // index in heap, -1 when not resident
	heap   []int32
}

func newLRFU(n int, halfLife float64) *lrfuPolicy {
	p := &lrfuPolicy{lambda: 1 / halfLife, key: make([]float64, n), last: make([]int64, n), pos: make([]int32, n)}
	for i := range p.pos {
		p.pos[i] = -1
	}
	return p
}

// less orders by key, then by age.
func (p *lrfuPolicy) less(a, b int32) bool {
	ka, kb := p.key[a], p.key[b]
	return ka < kb || (ka == kb && p.last[a] < p.last[b])
}

func (p *lrfuPolicy) swap(i, j int) {
	h := p.heap
	h[i], h[j] = h[j], h[i]
	p.pos[h[i]], p.pos[h[j]] = int32(i), int32(j)
}

func (p *lrfuPolicy) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !p.less(p.heap[i], p.heap[parent]) {
			return
		}
		p.swap(i, parent)
		i = parent
	}
}

func (p *lrfuPolicy) down(i int) {
	n := len(p.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && p.less(p.heap[r], p.heap[l]) {
			m = r
		}
		if !p.less(p.heap[m], p.heap[i]) {
			return
		}
		p.swap(i, m)
		i = m
	}
}

// The key of an id is log2(CRF at its last access) + λ·last: comparing
// keys compares CRFs at any later time, so keys change only on access.
func (p *lrfuPolicy) inserted(id int32, now int64, spec bool) {
	p.last[id] = now
	p.key[id] = math.Inf(-1) // no access yet: CRF 0
	if spec {
		p.key[id] = p.lambda * float64(now-specAge)
	}
	p.pos[id] = int32(len(p.heap))
	p.heap = append(p.heap, id)
	p.up(len(p.heap) - 1)
}

func (p *lrfuPolicy) accessed(id int32, now int64) {
	crf := 1.0
	if k := p.key[id]; !math.IsInf(k, -1) {
		crf += math.Exp2(k - p.lambda*float64(now))
	}
	p.key[id] = math.Log2(crf) + p.lambda*float64(now)
	p.last[id] = now
	if i := int(p.pos[id]); i >= 0 {
		p.down(i) // the key only grows
		p.up(int(p.pos[id]))
	}
}

func (p *lrfuPolicy) removed(id int32) {
	i := int(p.pos[id])
	last := len(p.heap) - 1
	if i != last {
		p.swap(i, last)
	}
	p.heap = p.heap[:last]
	p.pos[id] = -1
	if i < last {
		p.down(i)
		p.up(i)
	}
}

func (p *lrfuPolicy) victim(_ int, _ int64, evictable func(int32) bool) int32 {
	if len(p.heap) == 0 {
		return -1
	}
	if id := p.heap[0]; evictable(id) {
		return id
	}
	best := int32(-1)
	for _, id := range p.heap {
		if (best < 0 || p.less(id, best)) && evictable(id) {
			best = id
		}
	}
	return best
}

// adaptive follows whichever candidate policy would have hit most lately.
// Every candidate tracks the real resident set (so any of them can name
// the victim) and also runs its own shadow cache of the same capacity on
// the demand stream, which is what its hits are counted on.
type adaptive struct {
	cands   []policy
	shadows []*cache
	score   []float64
	decay   float64 // per observed layer demand
	cur     int
}

// adaptiveMemory is how many steps a candidate's hits are remembered for
// (the past decays by 1/e over that many steps).
const adaptiveMemory = 128

// adaptiveMargin is how much more (relative) a candidate must have hit
// than the current one to take over, so ties do not flap.
const adaptiveMargin = 0.01

func adaptiveCandidates() []struct {
	p  Policy
	hl float64
} {
	return []struct {
		p  Policy
		hl float64
	}{{LayerLRU, 0}, {LRU, 0}, {LRFU, 2}, {LRFU, 4}, {LRFU, 8}, {LRFU, 16}, {LRFU, 32}}
}

func newAdaptive(sp *ids, slots int) *adaptive {
	a := &adaptive{decay: 1 - 1/float64(adaptiveMemory*max(1, len(sp.layers)))}
	for _, c := range adaptiveCandidates() {
		real, _ := newPolicy(c.p, sp, slots, c.hl)
		shadowPol, _ := newPolicy(c.p, sp, slots, c.hl)
		a.cands = append(a.cands, real)
		a.shadows = append(a.shadows, newCacheIDs(shadowPol, slots, sp, false, true))
		a.score = append(a.score, 0)
	}
	return a
}

func (a *adaptive) inserted(id int32, now int64, spec bool) {
	for _, c := range a.cands {
		c.inserted(id, now, spec)
	}
}

func (a *adaptive) accessed(id int32, now int64) {
	for _, c := range a.cands {
		c.accessed(id, now)
	}
}

func (a *adaptive) removed(id int32) {
	for _, c := range a.cands {
		c.removed(id)
	}
}

func (a *adaptive) victim(layer int, now int64, evictable func(int32) bool) int32 {
	return a.cands[a.cur].victim(layer, now, evictable)
}

// observe replays one layer's demand through every shadow and re-ranks
// the candidates.
func (a *adaptive) observe(layer int, experts []int, _ int64) {
	for i, sh := range a.shadows {
		hits := sh.c.hits
		sh.replay(layer, experts)
		a.score[i] = a.score[i]*a.decay + float64(sh.c.hits-hits)
	}
	best := a.cur
	for i, s := range a.score {
		if s > a.score[best]*(1+adaptiveMargin)+1e-9 {
			best = i
		}
	}
	a.cur = best
}

// current names the candidate in charge.
func (a *adaptive) current() string {
	c := adaptiveCandidates()[a.cur]
	if c.p == LRFU {
		return fmt.Sprintf("%s/%g", c.p, c.hl)
	}
	return string(c.p)
}
