package tokenizer

import (
	"bytes"
	"hash/maphash"
	"unsafe"
)

// strTable is the vocabulary: token bytes -> id. All token bytes live in one arena and the index is an
// open-addressing hash table whose slots carry a hash tag next to the entry number, so loading a
// 200k-entry vocabulary makes a handful of allocations instead of one per token, a lookup touches few
// cache lines, and lookups by []byte (merges, byte-level words) need no conversion to string.
type strTable struct {
	seed    maphash.Seed
	arena   []byte
	entries []strEntry
	slots   []uint64 // hash tag << 32 | entry+1; 0 when free
	mask    uint64
}

type strEntry struct {
	start, n uint32 // bytes arena[start:start+n]
	id       int32
}

func newStrTable(capacity int) *strTable {
	t := &strTable{seed: maphash.MakeSeed()}
	t.resize(capacity)
	return t
}

func (t *strTable) resize(capacity int) {
	size := 16
	for size < 2*capacity {
		size <<= 1
	}
	t.slots = make([]uint64, size)
	t.mask = uint64(size - 1)
	for e := range t.entries {
		h := maphash.Bytes(t.seed, t.entry(e))
		for i := h & t.mask; ; i = (i + 1) & t.mask {
			if t.slots[i] == 0 {
				t.slots[i] = h>>32<<32 | uint64(e+1)
				break
			}
		}
	}
}

func (t *strTable) entry(e int) []byte {
	en := t.entries[e]
	return t.arena[en.start : en.start+en.n]
}

// put sets the id of key; a repeated key keeps the last id, as serde's map does.
func (t *strTable) put(key []byte, id int32) {
	if 2*(len(t.entries)+1) > len(t.slots) {
		t.resize(2 * (len(t.entries) + 1))
	}
	h := maphash.Bytes(t.seed, key)
	tag := h >> 32 << 32
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := t.slots[i]
		if s == 0 {
			t.entries = append(t.entries, strEntry{start: uint32(len(t.arena)), n: uint32(len(key)), id: id})
			t.arena = append(t.arena, key...)
			t.slots[i] = tag | uint64(len(t.entries))
			return
		}
		if s&^0xFFFFFFFF == tag {
			if e := int(uint32(s)) - 1; bytes.Equal(t.entry(e), key) {
				t.entries[e].id = id
				return
			}
		}
	}
}

func (t *strTable) getBytes(key []byte) (int32, bool) {
	h := maphash.Bytes(t.seed, key)
	tag := h >> 32 << 32
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := t.slots[i]
		if s == 0 {
			return -1, false
		}
		if s&^0xFFFFFFFF == tag {
			if e := int(uint32(s)) - 1; bytes.Equal(t.entry(e), key) {
				return t.entries[e].id, true
			}
		}
	}
}

func (t *strTable) get(key string) (int32, bool) {
	h := maphash.String(t.seed, key)
	tag := h >> 32 << 32
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := t.slots[i]
		if s == 0 {
			return -1, false
		}
		if s&^0xFFFFFFFF == tag {
			if e := int(uint32(s)) - 1; string(t.entry(e)) == key {
				return t.entries[e].id, true
			}
		}
	}
}

// idStrings returns id -> token for ids 0..max ("" where no entry has the id). The strings point into
// the arena, which is never written again once the table is complete.
func (t *strTable) idStrings() []string {
	maxID := int32(-1)
	for _, en := range t.entries {
		maxID = max(maxID, en.id)
	}
	out := make([]string, maxID+1)
	for _, en := range t.entries {
		if en.n > 0 {
			out[en.id] = unsafe.String(&t.arena[en.start], int(en.n))
		}
	}
	return out
}
