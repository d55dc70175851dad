package scheduler

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
)

// fakeModel is a deterministic model whose next token is a hash of the
// whole sequence so far, read from its cache: a cache that holds the wrong
// tokens (a bad prefix reuse) changes the output. gate, when set, makes
// every step wait for a value, so tests control when steps happen.
type fakeModel struct {
	vocab, ctx int
	gate       chan struct{}
	eos        int32 // emitted when the hash hits it; -1 never

	mu      sync.Mutex
	live    map[*fakeCache]bool
	batches [][]int // per step: tokens of each sequence
	fail    error
}

func newFake(vocab, ctx int) *fakeModel {
	return &fakeModel{vocab: vocab, ctx: ctx, eos: -1, live: map[*fakeCache]bool{}}
}

func (m *fakeModel) Info() model.Info {
	return model.Info{ModelType: "fake", Vocab: m.vocab, MaxContext: m.ctx, Backend: "fake"}
}

func (m *fakeModel) NewCache(capacity int, _ kernels.DType) (kvcache.Cache, error) {
	if capacity <= 0 || capacity > m.ctx {
		capacity = m.ctx
	}
	c := &fakeCache{m: m, capacity: capacity, rows: min(capacity, 4)}
	m.mu.Lock()
	m.live[c] = true
	m.mu.Unlock()
	return c, nil
}

func (m *fakeModel) liveCaches() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.live)
}

func (m *fakeModel) steps() [][]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]int(nil), m.batches...)
}

// next is the token after history.
func (m *fakeModel) next(history []int32) int32 {
	h := fnv.New32a()
	for _, t := range history {
		_, _ = fmt.Fprintf(h, "%d,", t)
	}
	return int32(h.Sum32() % uint32(m.vocab))
}

func (m *fakeModel) Forward(ctx context.Context, b *model.Batch) (*model.Output, error) {
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m.mu.Lock()
	fail := m.fail
	var sizes []int
	for _, q := range b.Seqs {
		sizes = append(sizes, len(q.Tokens))
	}
	m.batches = append(m.batches, sizes)
	m.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	out := &model.Output{Logits: make([][]float32, len(b.Seqs))}
	for _, q := range b.Seqs {
		c := q.Cache.(interface{ base() *fakeCache }).base()
		if c.released {
			return nil, errors.New("fake: released cache")
		}
		if len(c.toks)+len(q.Tokens) > c.capacity {
			return nil, kvcache.ErrCacheFull
		}
	}
	for i, q := range b.Seqs {
		c := q.Cache.(interface{ base() *fakeCache }).base()
		c.toks = append(c.toks, q.Tokens...)
		for c.rows < len(c.toks) {
			c.rows = min(c.capacity, 2*c.rows)
		}
		if q.Logits == model.NoLogits {
			continue
		}
		lg := make([]float32, m.vocab)
		lg[m.next(c.toks)] = 10
		out.Logits[i] = lg
	}
	return out, nil
}

func (m *fakeModel) Close() error { return nil }

// fakeCache holds the tokens themselves.
type fakeCache struct {
	m              *fakeModel
	toks           []int32
	capacity, rows int
	released       bool
}

func (c *fakeCache) base() *fakeCache { return c }
func (c *fakeCache) Len() int         { return len(c.toks) }
func (c *fakeCache) Capacity() int    { return c.capacity }
func (c *fakeCache) Begin(int) error {
	return errors.New("fake: the fake model appends directly")
}
func (c *fakeCache) Update(int, kernels.Tensor, kernels.Tensor) (kvcache.View, error) {
	return kvcache.View{}, errors.New("fake: no attention")
}
func (c *fakeCache) Commit() {}
func (c *fakeCache) Truncate(n int) error {
	if n < 0 || n > len(c.toks) {
		return fmt.Errorf("fake: truncate to %d of %d", n, len(c.toks))
	}
	c.toks = c.toks[:n]
	return nil
}
func (c *fakeCache) Release() {
	c.released = true
	c.m.mu.Lock()
	delete(c.m.live, c)
	c.m.mu.Unlock()
}
func (c *fakeCache) Bytes() int { return 100 * c.rows }

// snapCache is a fakeCache that, like a hybrid cache, can only be cut back
// to snapshot positions.
type snapCache struct {
	*fakeCache
	snaps map[int]bool
}

func (c *snapCache) SnapshotAt(pos int) error {
	if pos < len(c.toks) {
		return errors.New("fake: snapshot in the past")
	}
	c.snaps[pos] = true
	return nil
}
func (c *snapCache) Snapshots() []int     { return nil }
func (c *snapCache) DropSnapshot(pos int) { delete(c.snaps, pos) }
func (c *snapCache) Restorable(n int) int {
	if n >= len(c.toks) {
		return len(c.toks)
	}
	best := 0
	for p := range c.snaps {
		if p <= n && p > best {
			best = p
		}
	}
	return best
}
func (c *snapCache) Truncate(n int) error {
	if n != len(c.toks) && n != 0 && !c.snaps[n] {
		return kvcache.ErrNoSnapshot
	}
	return c.fakeCache.Truncate(n)
}

// hybridFake hands out snapCaches.
type hybridFake struct{ *fakeModel }

func (m hybridFake) NewCache(capacity int, dt kernels.DType) (kvcache.Cache, error) {
	c, _ := m.fakeModel.NewCache(capacity, dt)
	return &snapCache{fakeCache: c.(*fakeCache), snaps: map[int]bool{}}, nil
}
