package tokenizer

import "math/bits"

// pairTable maps a pair of token ids to its merge (rank and merged id). It is an open-addressing hash
// table on 64-bit keys: the merge lookup is the innermost operation of BPE, and this is several times
// cheaper than a Go map there.
type pairTable struct {
	keys  []uint64 // emptyKey where free
	vals  []uint64 // rank<<32 | merged id
	shift uint
	n     int
}

const emptyKey = ^uint64(0) // the pair (-1, -1), which no vocabulary has

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

func newPairTable(capacity int) *pairTable {
	size := 16
	for size < 2*capacity {
		size <<= 1
	}
	t := &pairTable{keys: make([]uint64, size), vals: make([]uint64, size), shift: uint(64 - bits.TrailingZeros(uint(size)))}
	for i := range t.keys {
		t.keys[i] = emptyKey
	}
	return t
}

// grow doubles the table (the load factor stays at or below one half).
func (t *pairTable) grow() {
	old := *t
	*t = *newPairTable(len(old.keys))
	for i, k := range old.keys {
		if k != emptyKey {
			t.put(int32(k>>32), int32(uint32(k)), uint32(old.vals[i]>>32), int32(uint32(old.vals[i])))
		}
	}
}

func (t *pairTable) slot(key uint64) uint64 { return (key * 0x9E3779B97F4A7C15) >> t.shift }

// put sets the merge of (a, b); a repeated pair keeps the last value, as HF's map does.
func (t *pairTable) put(a, b int32, rank uint32, merged int32) {
	if 2*(t.n+1) > len(t.keys) {
		t.grow()
	}
	key := pairKey(a, b)
	mask := uint64(len(t.keys) - 1)
	for i := t.slot(key); ; i = (i + 1) & mask {
		switch t.keys[i] {
		case emptyKey:
			t.keys[i] = key
			t.vals[i] = uint64(rank)<<32 | uint64(uint32(merged))
			t.n++
			return
		case key:
			t.vals[i] = uint64(rank)<<32 | uint64(uint32(merged))
			return
		}
	}
}

// get returns the rank and merged id of (a, b), or noRank when the pair does not merge.
func (t *pairTable) get(a, b int32) (uint32, int32) {
	key := pairKey(a, b)
	mask := uint64(len(t.keys) - 1)
	for i := t.slot(key); ; i = (i + 1) & mask {
		k := t.keys[i]
		if k == key {
			v := t.vals[i]
			return uint32(v >> 32), int32(uint32(v))
		}
		if k == emptyKey {
			return noRank, -1
		}
	}
}
