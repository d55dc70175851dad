package tokenizer

import (
	"strings"
	"sync"
	"unicode/utf8"
)

// bpe is the BPE model of HF tokenizers: a vocabulary, ranked merges, and the options the supported
// tokenizer.json files set (byte-level input, byte fallback, unk fusing, ignore_merges).
type bpe struct {
	vocab     *strTable // token -> id
	idToToken []string  // id -> token; "" where the id is not in the model vocabulary
	merges    *pairTable

	// byteLevel is set when the pre-tokenizer ends with ByteLevel: words arrive as raw bytes and each byte
	// stands for its byte-level character, whose id is byteIDs[b] (-1 when the vocabulary lacks it).
	byteLevel bool
	byteIDs   [256]int32

	ignoreMerges    bool
	byteFallback    bool
	byteFallbackIDs [256]int32 // id of "<0xXX>", -1 when absent
	unkID           int32      // -1: no unk token
	fuseUnk         bool

	cache wordCache
}

// The cache maps a word to its ids. HF tokenizers caches the same way (words under 256 bytes, a bounded
// number of entries, no eviction: once full, new words are merged every time); it is what makes repeated
// words cheap. 16384 entries of at most 255 bytes keep it to a few MB even on adversarial input.
const (
	cacheMaxWord    = 256
	cacheMaxEntries = 1 << 14
)

type wordCache struct {
	mu sync.RWMutex
	m  map[string][]int32
}

func (c *wordCache) get(w string) ([]int32, bool) {
	c.mu.RLock()
	ids, ok := c.m[w]
	c.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(w string, ids []int32) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string][]int32, 1024)
	}
	if len(c.m) < cacheMaxEntries {
		c.m[strings.Clone(w)] = ids
	}
	c.mu.Unlock()
}

// symbol is one element of a word being merged; removed symbols have n == 0.
type symbol struct {
	id         int32
	prev, next int32
	n          int32 // bytes of the word it covers
}

// scratch holds the buffers one word needs, reused across words of one Encode call.
type scratch struct {
	syms  []symbol
	heap  []uint64
	ids   []int32
	ids2  []int32
	ranks []uint32
	news  []int32
	words []string
	bytes []byte
}

var scratchPool = sync.Pool{New: func() any { return &scratch{} }}

// encodeWord appends the ids of one pre-tokenized word.
func (m *bpe) encodeWord(w string, out []int32, sc *scratch) []int32 {
	if w == "" {
		return out
	}
	if m.ignoreMerges {
		var id int32
		var ok bool
		if m.byteLevel {
			buf := sc.bytes[:0]
			for k := 0; k < len(w); k++ {
				buf = append(buf, byteToStr[w[k]]...)
			}
			sc.bytes = buf
			id, ok = m.vocab.getBytes(buf)
		} else {
			id, ok = m.vocab.get(w)
		}
		if ok {
			return append(out, id)
		}
	}
	cacheable := len(w) < cacheMaxWord
	if cacheable {
		if ids, ok := m.cache.get(w); ok {
			return append(out, ids...)
		}
	}
	sc.ids = m.mergeWord(w, sc.ids[:0], sc)
	if cacheable {
		m.cache.put(w, append([]int32(nil), sc.ids...))
	}
	return append(out, sc.ids...)
}

// initialSymbols splits w into the model's starting symbols: one per byte for byte-level input, one per
// code point otherwise, with byte fallback and unk handling as HF's BPE::merge_word does it.
func (m *bpe) initialSymbols(w string, syms []symbol) []symbol {
	add := func(id int32, n int) {
		syms = append(syms, symbol{id: id, n: int32(n)})
	}
	unkID, unkLen := int32(-1), 0
	flushUnk := func() {
		if unkID >= 0 {
			add(unkID, unkLen)
			unkID, unkLen = -1, 0
		}
	}
	unknown := func(ch string) {
		if m.byteFallback {
			ok := true
			for k := 0; k < len(ch); k++ {
				if m.byteFallbackIDs[ch[k]] < 0 {
					ok = false
					break
				}
			}
			if ok {
				// HF appends the byte tokens without flushing a pending unk first; kept as is.
				for k := 0; k < len(ch); k++ {
					add(m.byteFallbackIDs[ch[k]], 1)
				}
				return
			}
		}
		if m.unkID >= 0 {
			switch {
			case unkID >= 0 && m.fuseUnk:
				unkLen += len(ch)
			case unkID >= 0:
				add(unkID, unkLen)
				unkID, unkLen = m.unkID, len(ch)
			default:
				unkID, unkLen = m.unkID, len(ch)
			}
		}
		// No unk token: the character is dropped, as HF does.
	}
	if m.byteLevel {
		for k := 0; k < len(w); k++ {
			if id := m.byteIDs[w[k]]; id >= 0 {
				flushUnk()
				add(id, 1)
			} else {
				unknown(byteLevelString(w[k]))
			}
		}
	} else {
		for k := 0; k < len(w); {
			_, n := utf8.DecodeRuneInString(w[k:])
			ch := w[k : k+n]
			if id, ok := m.vocab.get(ch); ok {
				flushUnk()
				add(id, n)
			} else {
				unknown(ch)
			}
			k += n
		}
	}
	flushUnk()
	return syms
}

// mergeWord runs the BPE merges over one word: always the lowest-ranked adjacent pair, leftmost first.
// That is what HF's Word::merge_all computes with its heap (ranks are unique per pair, so "lowest rank,
// then lowest position" is a total order over the live pairs). Short words use a linear scan, which is
// faster than a heap at that size; long ones the heap.
func (m *bpe) mergeWord(w string, out []int32, sc *scratch) []int32 {
	syms := m.initialSymbols(w, sc.syms[:0])
	sc.syms = syms
	if len(syms) <= linearMergeMax {
		return m.mergeLinear(syms, out, sc)
	}
	return m.mergeHeap(syms, out, sc)
}

// linearMergeMax is the symbol count up to which the O(n²) scan beats the heap.
const linearMergeMax = 48

const noRank = ^uint32(0)

func (m *bpe) mergeLinear(syms []symbol, out []int32, sc *scratch) []int32 {
	n := len(syms)
	ids := sc.ids2[:0]
	for _, s := range syms {
		ids = append(ids, s.id)
	}
	ranks := sc.ranks[:0]
	news := sc.news[:0]
	for k := 0; k+1 < n; k++ {
		r, id := m.merges.get(ids[k], ids[k+1])
		ranks = append(ranks, r)
		news = append(news, id)
	}
	for len(ids) > 1 {
		best, bestRank := -1, noRank
		for k, r := range ranks {
			if r < bestRank {
				best, bestRank = k, r
			}
		}
		if best < 0 {
			break
		}
		ids[best] = news[best]
		ids = append(ids[:best+1], ids[best+2:]...)
		ranks = append(ranks[:best], ranks[best+1:]...)
		news = append(news[:best], news[best+1:]...)
		if best > 0 {
			ranks[best-1], news[best-1] = m.merges.get(ids[best-1], ids[best])
		}
		if best < len(ranks) {
			ranks[best], news[best] = m.merges.get(ids[best], ids[best+1])
		}
	}
	out = append(out, ids...)
	sc.ids2, sc.ranks, sc.news = ids, ranks, news
	return out
}

// mergeHeap is HF's algorithm: a min-heap of (rank, position) with lazy invalidation.
func (m *bpe) mergeHeap(syms []symbol, out []int32, sc *scratch) []int32 {
	for k := range syms {
		syms[k].prev = int32(k - 1)
		syms[k].next = int32(k + 1)
	}
	syms[len(syms)-1].next = -1
	h := sc.heap[:0]
	for k := 0; k+1 < len(syms); k++ {
		if r, _ := m.merges.get(syms[k].id, syms[k+1].id); r != noRank {
			h = heapPush(h, uint64(r)<<32|uint64(k))
		}
	}
	for len(h) > 0 {
		var top uint64
		top, h = heapPop(h)
		rank, pos := uint32(top>>32), int32(uint32(top))
		cur := &syms[pos]
		if cur.n == 0 || cur.next < 0 {
			continue
		}
		nextPos := cur.next
		right := syms[nextPos]
		r, newID := m.merges.get(cur.id, right.id)
		if r != rank {
			continue // stale entry: this position now holds another pair
		}
		cur.id = newID
		cur.n += right.n
		cur.next = right.next
		syms[nextPos].n = 0
		if right.next >= 0 {
			syms[right.next].prev = pos
		}
		if cur.prev >= 0 {
			if r, _ := m.merges.get(syms[cur.prev].id, cur.id); r != noRank {
				h = heapPush(h, uint64(r)<<32|uint64(cur.prev))
			}
		}
		if cur.next >= 0 {
			if r, _ := m.merges.get(cur.id, syms[cur.next].id); r != noRank {
				h = heapPush(h, uint64(r)<<32|uint64(pos))
			}
		}
	}
	for _, s := range syms {
		if s.n != 0 {
			out = append(out, s.id)
		}
	}
	sc.heap = h
	return out
}

// The merge queue is a 4-ary min-heap of rank<<32 | position: shallower than a binary heap, and the
// four children share a cache line.
func heapPush(h []uint64, it uint64) []uint64 {
	h = append(h, it)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 4
		if h[i] >= h[p] {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	return h
}

func heapPop(h []uint64) (uint64, []uint64) {
	top := h[0]
	last := len(h) - 1
	x := h[last]
	h = h[:last]
	if last == 0 {
		return top, h
	}
	i := 0
	for {
		c := 4*i + 1
		if c >= last {
			break
		}
		m := c
		end := min(c+4, last)
		for k := c + 1; k < end; k++ {
			if h[k] < h[m] {
				m = k
			}
		}
		if h[m] >= x {
			break
		}
		h[i] = h[m]
		i = m
	}
	h[i] = x
	return top, h
}
