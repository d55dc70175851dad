package kvcache

import (
	"errors"
	"fmt"

	"github.com/maniac-ai/mach/kernels"
)

// LinearShape is the state of one linear-attention (Gated DeltaNet) layer:
// the convolution state (the last ConvRows pre-convolution input rows of
// Channels values) and the recurrent state (StateRows × StateCols, f32).
// Neither grows with the sequence.
type LinearShape struct {
	ConvRows, Channels   int
	StateRows, StateCols int
}

// Bytes returns the f32 storage of one copy of the state.
func (s LinearShape) Bytes() int {
	return 4 * (s.ConvRows*s.Channels + s.StateRows*s.StateCols)
}

// HybridLayer is one layer of a hybrid cache: a linear-attention layer
// (Linear set) or a full-attention layer with keys and values of KV's
// widths.
type HybridLayer struct {
	Linear *LinearShape
	KV     LayerShape
}

// HybridSpec describes a hybrid cache.
type HybridSpec struct {
	Layers []HybridLayer
	// DType stores the full-attention keys and values (F32, F16, BF16);
	// linear-attention state is always f32.
	DType    kernels.DType
	Capacity int
	// Initial is how many key/value rows to allocate up front (see Spec).
	Initial int
}

// LinearView is what a linear-attention layer reads and writes in a step.
// The layer reads Conv and State (the state before the step) and writes the
// state after the step into NewConv and NewState (separate buffers, so an
// aborted step leaves the sequence untouched). For every i, it also copies
// its state after Cuts[i] of the step's tokens into SnapConv[i] and
// SnapState[i]: the snapshots requested inside this step.
type LinearView struct {
	Conv, State       kernels.Tensor
	NewConv, NewState kernels.Tensor
	// Cuts are step-relative token counts in (0, n], ascending.
	Cuts                []int
	SnapConv, SnapState []kernels.Tensor
}

// LinearCache is implemented by caches that hold linear-attention layers.
type LinearCache interface {
	Cache
	// LinearState returns layer's state for the step in progress.
	LinearState(layer int) (LinearView, error)
}

// Snapshotter is implemented by caches whose state cannot be cut back to
// an arbitrary length (recurrent state): they keep snapshots at chosen
// positions, and Truncate rolls back only to one of those (or to 0).
type Snapshotter interface {
	// SnapshotAt asks for the state as of position pos (Len() ≤ pos ≤
	// Capacity()). A position at Len() is taken at once; a later one is
	// taken by the step that reaches it.
	SnapshotAt(pos int) error
	// Snapshots lists the positions with a snapshot, ascending.
	Snapshots() []int
	// DropSnapshot forgets the snapshot at pos (a no-op if there is none).
	DropSnapshot(pos int)
	// Restorable returns the largest position ≤ n that Truncate can roll
	// back to: Len() when n ≥ Len(), else the latest snapshot ≤ n, or 0.
	Restorable(n int) int
}

// ErrNoSnapshot is returned by Truncate when a hybrid cache has no snapshot
// of its recurrent state at the requested position.
var ErrNoSnapshot = errors.New("no snapshot of the recurrent state at that position")

// Hybrid is the cache of a hybrid model (qwen3_5_moe): full-attention
// layers keep keys and values (a Standard cache over those layers), and
// linear-attention layers keep a convolution state and a recurrent state
// that are double-buffered — a step reads one copy and writes the other,
// and Commit switches — plus snapshots at chosen positions for prefix reuse
// and speculative rollback.
type Hybrid struct {
	b    kernels.Backend
	spec HybridSpec

	// cache data
	kv     *Standard // nil when no layer has keys and values
	kvIdx  []int     // model layer → kv layer (-1 for linear layers)
	linear []*linearState

	// cache metadata
	len  int
	snap snapshots[*snapshot] // position → state as of that position

	// current step; snap.step holds the snapshot buffers the step fills,
	// for the positions snap.stepAt inside it
	pending int
	inStep  bool
	touched []bool
}

// linearState is one linear layer's two copies of its state.
type linearState struct {
	shape       LinearShape
	conv, state [2]kernels.Tensor
	cur         int
}

// snapshot holds every linear layer's state at one position (indexed like
// Hybrid.linear; nil for full-attention layers).
type snapshot struct {
	conv, state []kernels.Tensor
}

var (
	_ LinearCache = (*Hybrid)(nil)
	_ Snapshotter = (*Hybrid)(nil)
)

// NewHybrid returns an empty hybrid cache on backend b.
func NewHybrid(b kernels.Backend, spec HybridSpec) (*Hybrid, error) {
	if spec.Capacity <= 0 || len(spec.Layers) == 0 {
		return nil, fmt.Errorf("kvcache: capacity %d for %d layers", spec.Capacity, len(spec.Layers))
	}
	h := &Hybrid{b: b, spec: spec, kvIdx: make([]int, len(spec.Layers)), linear: make([]*linearState, len(spec.Layers)),
		snap: newSnapshots[*snapshot](), touched: make([]bool, len(spec.Layers))}
	var kvLayers []LayerShape
	for i, l := range spec.Layers {
		h.kvIdx[i] = -1
		if l.Linear == nil {
			h.kvIdx[i] = len(kvLayers)
			kvLayers = append(kvLayers, l.KV)
			continue
		}
		s := *l.Linear
		if s.ConvRows < 0 || s.Channels <= 0 || s.StateRows <= 0 || s.StateCols <= 0 {
			return nil, fmt.Errorf("kvcache: layer %d: linear state %+v", i, s)
		}
		ls := &linearState{shape: s}
		for k := range 2 {
			var err error
			if ls.conv[k], err = b.Alloc(kernels.F32, s.ConvRows, s.Channels); err != nil {
				return nil, fmt.Errorf("kvcache: %w", err)
			}
			if ls.state[k], err = b.Alloc(kernels.F32, s.StateRows, s.StateCols); err != nil {
				return nil, fmt.Errorf("kvcache: %w", err)
			}
		}
		h.linear[i] = ls
	}
	if len(kvLayers) > 0 {
		kv, err := NewStandard(b, Spec{Layers: kvLayers, DType: spec.DType, Capacity: spec.Capacity, Initial: spec.Initial})
		if err != nil {
			return nil, err
		}
		h.kv = kv
	}
	h.zero()
	return h, b.Sync()
}

// zero resets the current copy of every linear state (position 0).
func (h *Hybrid) zero() {
	for _, ls := range h.linear {
		if ls != nil {
			h.b.Fill(ls.conv[ls.cur], 0)
			h.b.Fill(ls.state[ls.cur], 0)
		}
	}
}

// LinearBytes returns the memory of one copy of every linear layer's state
// (what one snapshot costs).
func (s HybridSpec) LinearBytes() int {
	n := 0
	for _, l := range s.Layers {
		if l.Linear != nil {
			n += l.Linear.Bytes()
		}
	}
	return n
}

// KVBytesPerToken returns the key/value storage one token takes.
func (s HybridSpec) KVBytesPerToken() int {
	n := 0
	for _, l := range s.Layers {
		if l.Linear == nil {
			n += l.KV.K + l.KV.V
		}
	}
	return n * s.DType.Size()
}

// Len implements Cache.
func (h *Hybrid) Len() int { return h.len }

// Capacity implements Cache.
func (h *Hybrid) Capacity() int { return h.spec.Capacity }

// Bytes returns the memory the cache holds now: keys and values, both
// copies of the linear state, and the snapshots (kept and spare).
func (h *Hybrid) Bytes() int {
	n := (2 + h.snap.count()) * h.spec.LinearBytes()
	if h.kv != nil {
		n += h.kv.Bytes()
	}
	return n
}

// Begin implements Cache.
func (h *Hybrid) Begin(n int) error {
	if err := checkBegin(h.linear == nil, h.len, n, h.spec.Capacity); err != nil {
		return err
	}
	if h.kv != nil {
		if err := h.kv.Begin(n); err != nil {
			return err
		}
	}
	if err := h.snap.reserve(h.len, h.len+n, h.newSnapshot); err != nil {
		h.abort()
		return err
	}
	clear(h.touched)
	h.pending, h.inStep = n, true
	return nil
}

// Update implements Cache for the full-attention layers.
func (h *Hybrid) Update(layer int, k, v kernels.Tensor) (View, error) {
	if layer < 0 || layer >= len(h.kvIdx) || h.kvIdx[layer] < 0 {
		return View{}, fmt.Errorf("kvcache: layer %d has no keys and values (linear attention or out of range)", layer)
	}
	return h.kv.Update(h.kvIdx[layer], k, v)
}

// LinearState implements LinearCache.
func (h *Hybrid) LinearState(layer int) (LinearView, error) {
	if !h.inStep {
		return LinearView{}, fmt.Errorf("kvcache: LinearState outside a step (call Begin)")
	}
	if layer < 0 || layer >= len(h.linear) || h.linear[layer] == nil {
		return LinearView{}, fmt.Errorf("kvcache: layer %d is not a linear-attention layer", layer)
	}
	ls := h.linear[layer]
	h.touched[layer] = true
	v := LinearView{Conv: ls.conv[ls.cur], State: ls.state[ls.cur], NewConv: ls.conv[1-ls.cur], NewState: ls.state[1-ls.cur]}
	for i, p := range h.snap.stepAt {
		v.Cuts = append(v.Cuts, p-h.len)
		v.SnapConv = append(v.SnapConv, h.snap.step[i].conv[layer])
		v.SnapState = append(v.SnapState, h.snap.step[i].state[layer])
	}
	return v, nil
}

// Commit implements Cache. Linear layers the step did not run keep their
// state (their snapshots inside the step are copies of it).
func (h *Hybrid) Commit() {
	if !h.inStep {
		return
	}
	for i, ls := range h.linear {
		if ls == nil {
			continue
		}
		if h.touched[i] {
			ls.cur = 1 - ls.cur
			continue
		}
		for _, s := range h.snap.step {
			h.b.Copy(s.conv[i], ls.conv[ls.cur])
			h.b.Copy(s.state[i], ls.state[ls.cur])
		}
	}
	h.snap.keepReserved()
	if h.kv != nil {
		h.kv.Commit()
	}
	h.len += h.pending
	h.pending, h.inStep = 0, false
}

// abort drops the step in progress.
func (h *Hybrid) abort() {
	h.snap.unreserve()
	if h.kv != nil {
		_ = h.kv.Truncate(h.kv.Len())
	}
	h.pending, h.inStep = 0, false
}

// Truncate implements Cache. Cutting back to n < Len() restores the
// snapshot at n (which stays available) and forgets every snapshot and
// request after n; n = 0 needs none. Without a snapshot at n it returns an
// error wrapping ErrNoSnapshot and changes nothing.
func (h *Hybrid) Truncate(n int) error {
	if n < 0 || n > h.len {
		return fmt.Errorf("kvcache: truncate to %d of %d tokens", n, h.len)
	}
	h.abort()
	if n == h.len {
		return nil
	}
	s, ok := h.snap.at[n]
	if !ok && n != 0 {
		return fmt.Errorf("kvcache: truncate to %d tokens: %w (snapshots at %v; request one with SnapshotAt before the step that reaches it)",
			n, ErrNoSnapshot, h.Snapshots())
	}
	if ok {
		for i, ls := range h.linear {
			if ls != nil {
				h.b.Copy(ls.conv[ls.cur], s.conv[i])
				h.b.Copy(ls.state[ls.cur], s.state[i])
			}
		}
	} else {
		h.zero()
	}
	if h.kv != nil {
		if err := h.kv.Truncate(n); err != nil {
			return err
		}
	}
	h.snap.dropAfter(n)
	h.len = n
	return h.b.Sync()
}

// SnapshotAt implements Snapshotter.
func (h *Hybrid) SnapshotAt(pos int) error {
	if h.linear == nil {
		return fmt.Errorf("kvcache: use after Release")
	}
	if pos < h.len || pos > h.spec.Capacity {
		return fmt.Errorf("kvcache: snapshot at %d: outside [%d, %d] (the sequence holds %d tokens)", pos, h.len, h.spec.Capacity, h.len)
	}
	if pos == h.len { // the state before any step in progress
		s, err := h.snap.get(h.newSnapshot)
		if err != nil {
			return err
		}
		for i, ls := range h.linear {
			if ls != nil {
				h.b.Copy(s.conv[i], ls.conv[ls.cur])
				h.b.Copy(s.state[i], ls.state[ls.cur])
			}
		}
		h.snap.keep(pos, s)
		return h.b.Sync()
	}
	return h.snap.request(pos, h.len, h.pending, h.inStep)
}

// Snapshots implements Snapshotter.
func (h *Hybrid) Snapshots() []int { return h.snap.positions() }

// DropSnapshot implements Snapshotter; it also cancels a pending request.
func (h *Hybrid) DropSnapshot(pos int) { h.snap.drop(pos) }

// Restorable implements Snapshotter.
func (h *Hybrid) Restorable(n int) int {
	if n >= h.len {
		return h.len
	}
	return h.snap.latest(n)
}

// newSnapshot allocates snapshot buffers.
func (h *Hybrid) newSnapshot() (*snapshot, error) {
	s := &snapshot{conv: make([]kernels.Tensor, len(h.linear)), state: make([]kernels.Tensor, len(h.linear))}
	for i, ls := range h.linear {
		if ls == nil {
			continue
		}
		var err error
		if s.conv[i], err = h.b.Alloc(kernels.F32, ls.shape.ConvRows, ls.shape.Channels); err != nil {
			return nil, fmt.Errorf("kvcache: snapshot: %w", err)
		}
		if s.state[i], err = h.b.Alloc(kernels.F32, ls.shape.StateRows, ls.shape.StateCols); err != nil {
			return nil, fmt.Errorf("kvcache: snapshot: %w", err)
		}
	}
	return s, nil
}

// Release implements Cache.
func (h *Hybrid) Release() {
	if h.kv != nil {
		h.kv.Release()
	}
	h.linear, h.snap = nil, snapshots[*snapshot]{}
	h.len, h.pending, h.inStep = 0, 0, false
}
