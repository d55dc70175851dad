package scheduler

import (
	"container/list"
	"encoding/binary"

	"github.com/maniac-ai/mach/pkg/kvcache"
)

// prefixCache keeps the caches of finished sequences so that a new request
// can continue from the longest prefix it shares with one of them. Entries
// are indexed by a trie over fixed-size token blocks (a path from the root
// spells an entry's first blocks) and evicted least recently used first.
//
// A cache holds one sequence, so reusing an entry takes it: the new
// sequence truncates it to the shared prefix and owns it. Hybrid caches can
// only be cut back to a snapshot of their recurrent state, which
// kvcache.Snapshotter.Restorable reports. It is used by the scheduler's
// goroutine only.
type prefixCache struct {
	block int
	root  *node
	lru   *list.List // of *entry, most recent first
	bytes int64
}

// entry is one cached sequence: tokens are the ids its cache holds.
type entry struct {
	tokens []int32
	cache  kvcache.Cache
	bytes  int64
	elem   *list.Element
	last   *node // the node of its last full block
}

// node is a block of tokens; through holds the entries whose tokens
// continue through it, ends those whose last full block it is.
type node struct {
	parent   *node
	key      string
	children map[string]*node
	through  map[*entry]struct{}
	ends     map[*entry]struct{}
	depth    int
}

func newPrefixCache(block int) *prefixCache {
	return &prefixCache{block: block, root: newNode(nil, "", 0), lru: list.New()}
}

func newNode(parent *node, key string, depth int) *node {
	return &node{parent: parent, key: key, depth: depth, children: map[string]*node{},
		through: map[*entry]struct{}{}, ends: map[*entry]struct{}{}}
}

// blockKey encodes block i of tokens as a map key.
func (p *prefixCache) blockKey(tokens []int32, i int) string {
	b := make([]byte, 4*p.block)
	for j, t := range tokens[i*p.block : (i+1)*p.block] {
		binary.LittleEndian.PutUint32(b[4*j:], uint32(t))
	}
	return string(b)
}

// Len is the number of entries.
func (p *prefixCache) Len() int { return p.lru.Len() }

func commonPrefix(a, b []int32) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// usable is how much of e a prompt can reuse: the common prefix, leaving at
// least one prompt token to run (its logits start the generation), cut back
// to where the cache can be truncated.
func usable(e *entry, prompt []int32) int {
	n := min(commonPrefix(e.tokens, prompt), len(prompt)-1, e.cache.Len())
	if s, ok := e.cache.(kvcache.Snapshotter); ok && n > 0 {
		n = s.Restorable(n)
	}
	return max(n, 0)
}

// lookup finds the entry sharing the longest usable prefix with prompt (at
// least one block, and at least half of the entry), or nil. It walks the prompt's blocks down the trie and
// compares the entries met on the way, deepest first: an entry that only
// reaches depth d shares fewer than (d+1)·block tokens, so the walk up
// stops once the best match is that long.
func (p *prefixCache) lookup(prompt []int32) (*entry, int) {
	n := p.root
	for i := 0; (i+1)*p.block <= len(prompt); i++ {
		c, ok := n.children[p.blockKey(prompt, i)]
		if !ok {
			break
		}
		n = c
	}
	var best *entry
	bestN := 0
	seen := map[*entry]bool{}
	for ; n != p.root; n = n.parent {
		if best != nil && bestN >= (n.depth+1)*p.block {
			break
		}
		for e := range n.through {
			if seen[e] {
				continue
			}
			seen[e] = true
			u := usable(e, prompt)
			if 2*u < len(e.tokens) {
				// Taking it would throw away more than it saves: a long
				// conversation stays cached for its own next turn rather
				// than serving a request that shares only its start.
				continue
			}
			if u > bestN || (u == bestN && best != nil && p.newer(e, best)) {
				best, bestN = e, u
			}
		}
	}
	if bestN < p.block {
		return nil, 0
	}
	return best, bestN
}

// newer reports whether a was used more recently than b.
func (p *prefixCache) newer(a, b *entry) bool {
	for el := p.lru.Front(); el != nil; el = el.Next() {
		switch el.Value.(*entry) {
		case a:
			return true
		case b:
			return false
		}
	}
	return false
}

// take removes e from the cache and returns its kv cache (now the
// caller's).
func (p *prefixCache) take(e *entry) kvcache.Cache {
	p.remove(e)
	return e.cache
}

func (p *prefixCache) remove(e *entry) {
	p.lru.Remove(e.elem)
	p.bytes -= e.bytes
	delete(e.last.ends, e)
	for n := e.last; n != p.root; {
		delete(n.through, e)
		parent := n.parent
		if len(n.through) == 0 && len(n.children) == 0 {
			delete(parent.children, n.key)
		}
		n = parent
	}
}

// put adds a finished sequence's cache holding tokens, which it takes
// over. Entries the new one makes redundant (their tokens are a prefix of
// its tokens and it can be cut back to their length) are released. A
// sequence shorter than one block is not worth keeping and is released.
// It returns the bytes released.
func (p *prefixCache) put(tokens []int32, c kvcache.Cache, bytes int64) int64 {
	if len(tokens) < p.block {
		c.Release()
		return bytes
	}
	e := &entry{tokens: tokens, cache: c, bytes: bytes}
	var released int64
	n := p.root
	var path []*node
	for i := 0; (i+1)*p.block <= len(tokens); i++ {
		key := p.blockKey(tokens, i)
		ch, ok := n.children[key]
		if !ok {
			ch = newNode(n, key, i+1)
			n.children[key] = ch
		}
		n = ch
		path = append(path, n)
	}
	for _, pn := range path {
		for old := range pn.ends {
			if len(old.tokens) <= len(tokens) && commonPrefix(old.tokens, tokens) == len(old.tokens) && restorable(c, len(old.tokens)) {
				p.remove(old)
				old.cache.Release()
				released += old.bytes
			}
		}
	}
	for _, pn := range path {
		pn.through[e] = struct{}{}
	}
	n.ends[e] = struct{}{}
	e.last = n
	e.elem = p.lru.PushFront(e)
	p.bytes += bytes
	return released
}

func restorable(c kvcache.Cache, n int) bool {
	if s, ok := c.(kvcache.Snapshotter); ok {
		return s.Restorable(n) == n
	}
	return true
}

// evictOldest releases the least recently used entry; it returns the
// bytes freed, 0 when the cache is empty.
func (p *prefixCache) evictOldest() int64 {
	el := p.lru.Back()
	if el == nil {
		return 0
	}
	e := el.Value.(*entry)
	p.remove(e)
	e.cache.Release()
	return e.bytes
}

// clear releases every entry.
func (p *prefixCache) clear() {
	for p.lru.Len() > 0 {
		p.evictOldest()
	}
}
