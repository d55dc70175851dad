package deepseekv4

// The lightning indexer keeps the index_topk best-scoring compressed
// entries. Its scores tie exactly more often than one would think — an
// entry whose every head's ReLU is zero scores 0 — and which of tied
// entries are kept then depends on the selection algorithm, not on the
// model. The reference logits come from PyTorch's CPU topk, so this file
// selects exactly as it does: PyTorch builds (value, index) pairs and runs
// libstdc++'s std::nth_element (std::partial_sort when k·64 ≤ n) with the
// comparator "greater value"; the first k pairs are the kept set. The
// algorithms below are re-derived from libstdc++'s documented structure
// (introselect with median-of-three pivots and an insertion-sort finish;
// heap select), operation for operation, so ties resolve identically.

type scored struct {
	v   float32
	idx int32
}

// greater is PyTorch's comparator for largest-first topk (no NaNs here).
func greater(a, b scored) bool { return a.v > b.v }

// topKSet returns the indices PyTorch's CPU topk keeps for vals.
func topKSet(vals []float32, k int) []int32 {
	n := len(vals)
	if k <= 0 || n == 0 {
		return nil
	}
	k = min(k, n)
	q := make([]scored, n)
	for i, v := range vals {
		q[i] = scored{v, int32(i)}
	}
	if k*64 <= n {
		heapSelect(q, 0, k, n)
	} else {
		nthElement(q, k-1)
	}
	out := make([]int32, k)
	for i := range out {
		out[i] = q[i].idx
	}
	return out
}

// nthElement is libstdc++'s std::nth_element(q.begin(), q.begin()+nth,
// q.end(), greater).
func nthElement(q []scored, nth int) {
	n := len(q)
	if n == 0 || nth == n {
		return
	}
	introselect(q, 0, nth, n, 2*lg(n))
}

func lg(n int) int {
	r := 0
	for n > 1 {
		n >>= 1
		r++
	}
	return r
}

func introselect(q []scored, first, nth, last, depth int) {
	for last-first > 3 {
		if depth == 0 {
			heapSelect(q, first, nth+1, last)
			q[first], q[nth] = q[nth], q[first]
			return
		}
		depth--
		cut := partitionPivot(q, first, last)
		if cut <= nth {
			first = cut
		} else {
			last = cut
		}
	}
	insertionSort(q, first, last)
}

// partitionPivot moves the median of q[first+1], q[mid], q[last-1] to
// q[first] and partitions around it.
func partitionPivot(q []scored, first, last int) int {
	mid := first + (last-first)/2
	moveMedianToFirst(q, first, first+1, mid, last-1)
	return unguardedPartition(q, first+1, last, first)
}

func moveMedianToFirst(q []scored, result, a, b, c int) {
	swap := func(i int) { q[result], q[i] = q[i], q[result] }
	switch {
	case greater(q[a], q[b]):
		switch {
		case greater(q[b], q[c]):
			swap(b)
		case greater(q[a], q[c]):
			swap(c)
		default:
			swap(a)
		}
	case greater(q[a], q[c]):
		swap(a)
	case greater(q[b], q[c]):
		swap(c)
	default:
		swap(b)
	}
}

func unguardedPartition(q []scored, first, last, pivot int) int {
	for {
		for greater(q[first], q[pivot]) {
			first++
		}
		last--
		for greater(q[pivot], q[last]) {
			last--
		}
		if !(first < last) {
			return first
		}
		q[first], q[last] = q[last], q[first]
		first++
	}
}

func insertionSort(q []scored, first, last int) {
	if first == last {
		return
	}
	for i := first + 1; i < last; i++ {
		if greater(q[i], q[first]) {
			v := q[i]
			copy(q[first+1:i+1], q[first:i])
			q[first] = v
			continue
		}
		v := q[i]
		j := i
		for greater(v, q[j-1]) {
			q[j] = q[j-1]
			j--
		}
		q[j] = v
	}
}

// heapSelect is libstdc++'s std::__heap_select(first, middle, last): the
// middle-first best of q[first:last] end up in q[first:middle].
func heapSelect(q []scored, first, middle, last int) {
	h := q[first:middle]
	makeHeap(h)
	for i := middle; i < last; i++ {
		if greater(q[i], h[0]) {
			// __pop_heap(first, middle, i): the top goes to i, q[i] sinks in.
			v := q[i]
			q[i] = h[0]
			adjustHeap(h, 0, len(h), v)
		}
	}
}

func makeHeap(h []scored) {
	n := len(h)
	if n < 2 {
		return
	}
	for parent := (n - 2) / 2; ; parent-- {
		adjustHeap(h, parent, n, h[parent])
		if parent == 0 {
			return
		}
	}
}

func adjustHeap(h []scored, hole, n int, v scored) {
	top := hole
	child := hole
	for child < (n-1)/2 {
		child = 2 * (child + 1)
		if greater(h[child], h[child-1]) {
			child--
		}
		h[hole] = h[child]
		hole = child
	}
	if n&1 == 0 && child == (n-2)/2 {
		child = 2 * (child + 1)
		h[hole] = h[child-1]
		hole = child - 1
	}
	// __push_heap(first, hole, top, v)
	parent := (hole - 1) / 2
	for hole > top && greater(h[parent], v) {
		h[hole] = h[parent]
		hole = parent
		parent = (hole - 1) / 2
	}
	h[hole] = v
}
