package kvcache

import (
	"fmt"

	"github.com/maniac-ai/mach/kernels"
)

// WindowLayer is one layer of a rotating cache: keys and values of KV's
// widths, and the layer's sliding window. A query at position p of a
// sliding layer attends to the keys at positions p-Window+1 … p, so between
// steps the layer needs only the last Window-1 tokens; Window 0 marks a
// full-attention layer, which keeps every token.
type WindowLayer struct {
	KV     LayerShape
	Window int
}

// RotatingSpec describes a rotating cache: the cache of models whose layers
// mix sliding-window and full attention (gpt_oss, gemma4).
type RotatingSpec struct {
	Layers []WindowLayer
	// DType stores keys and values (F32, F16 or BF16).
	DType kernels.DType
	// Capacity is the most tokens the sequence may hold.
	Capacity int
	// Initial is how many full-attention rows to allocate up front (see
	// Spec.Initial).
	Initial int
}

// keep returns how many past tokens the sliding layers must keep between
// steps: the largest window minus one (0 without sliding layers).
func (s RotatingSpec) keep() int {
	k := 0
	for _, l := range s.Layers {
		if l.Window > 0 {
			k = max(k, l.Window-1)
		}
	}
	return k
}

// SlidingBytesPerRow is the key/value storage one row of every sliding
// layer takes.
func (s RotatingSpec) SlidingBytesPerRow() int {
	n := 0
	for _, l := range s.Layers {
		if l.Window > 0 {
			n += l.KV.K + l.KV.V
		}
	}
	return n * s.DType.Size()
}

// FullBytesPerToken is the key/value storage one token takes in the
// full-attention layers.
func (s RotatingSpec) FullBytesPerToken() int {
	n := 0
	for _, l := range s.Layers {
		if l.Window <= 0 {
			n += l.KV.K + l.KV.V
		}
	}
	return n * s.DType.Size()
}

// Rotating is the cache of a model that mixes sliding-window and
// full-attention layers. Full-attention layers keep every token (a Standard
// cache over those layers). Sliding layers keep a window buffer whose
// memory is bounded by the window and the largest step, not the context:
// rows hold consecutive positions base, base+1, … in order, a step appends
// its tokens after the last Window-1 kept ones, and when the buffer is full
// the kept rows move to its front. Because keys stay in position order,
// attention over a sliding layer reads the same keys in the same order as
// it would from a Standard cache, so results are bit-identical to one.
//
// Truncate can cut back to any n whose last Window-1 tokens are still in
// the buffer; further back it needs a snapshot of the window as of n
// (SnapshotAt, like Hybrid's), or n = 0. Restorable says which.
type Rotating struct {
	b      kernels.Backend
	spec   RotatingSpec
	keep   int
	slides bool // some layer has a window

	// full-attention layers
	full    *Standard // nil when every layer slides
	fullIdx []int     // model layer → full layer, -1 for sliding layers

	// sliding layers: per model layer (nil tensors for full layers), rows
	// [0, size) allocated; row j holds position base+j for j < len-base.
	sk, sv []kernels.Tensor
	size   int
	base   int
	kpos   []int32 // kpos[j] = base + j

	// cache metadata
	len  int
	snap snapshots[*window] // position → sliding rows as of that position

	// current step
	pending int
	inStep  bool
}

// window is a copy of every sliding layer's last keep rows as of a
// position (fewer at the start of a sequence).
type window struct {
	rows   int
	sk, sv []kernels.Tensor
}

var (
	_ Cache       = (*Rotating)(nil)
	_ Snapshotter = (*Rotating)(nil)
)

// NewRotating returns an empty rotating cache on backend b.
func NewRotating(b kernels.Backend, spec RotatingSpec) (*Rotating, error) {
	if spec.Capacity <= 0 || len(spec.Layers) == 0 {
		return nil, fmt.Errorf("kvcache: capacity %d for %d layers", spec.Capacity, len(spec.Layers))
	}
	switch spec.DType {
	case kernels.F32, kernels.F16, kernels.BF16:
	default:
		return nil, fmt.Errorf("kvcache: storage type %s", spec.DType)
	}
	r := &Rotating{b: b, spec: spec, keep: spec.keep(), fullIdx: make([]int, len(spec.Layers)),
		sk: make([]kernels.Tensor, len(spec.Layers)), sv: make([]kernels.Tensor, len(spec.Layers)), snap: newSnapshots[*window]()}
	var fullLayers []LayerShape
	for i, l := range spec.Layers {
		if l.KV.K <= 0 || l.KV.V <= 0 || l.Window < 0 {
			return nil, fmt.Errorf("kvcache: layer %d: widths %d/%d, window %d", i, l.KV.K, l.KV.V, l.Window)
		}
		r.fullIdx[i] = -1
		r.slides = r.slides || l.Window > 0
		if l.Window == 0 {
			r.fullIdx[i] = len(fullLayers)
			fullLayers = append(fullLayers, l.KV)
		}
	}
	if len(fullLayers) > 0 {
		full, err := NewStandard(b, Spec{Layers: fullLayers, DType: spec.DType, Capacity: spec.Capacity, Initial: spec.Initial})
		if err != nil {
			return nil, err
		}
		r.full = full
	}
	return r, nil
}

// sliding reports whether the cache has sliding layers.
func (r *Rotating) sliding() bool { return r.slides }

// Len implements Cache.
func (r *Rotating) Len() int { return r.len }

// Capacity implements Cache.
func (r *Rotating) Capacity() int { return r.spec.Capacity }

// Bytes returns the memory the cache holds now: the full-attention rows,
// the sliding window buffers and the snapshots (kept and spare).
func (r *Rotating) Bytes() int {
	n := r.size * r.spec.SlidingBytesPerRow()
	if r.full != nil {
		n += r.full.Bytes()
	}
	per := r.keep * r.spec.SlidingBytesPerRow()
	n += r.snap.count() * per
	return n
}

// WindowRows returns the rows each sliding layer's buffer holds now; it
// depends on the window and the largest step, never on Len.
func (r *Rotating) WindowRows() int { return r.size }

// Begin implements Cache.
func (r *Rotating) Begin(n int) error {
	if err := checkBegin(r.sk == nil, r.len, n, r.spec.Capacity); err != nil {
		return err
	}
	r.abort()
	if err := r.room(n); err != nil {
		return err
	}
	if err := r.snap.reserve(r.len, r.len+n, r.newWindow); err != nil {
		r.abort()
		return err
	}
	if r.full != nil {
		if err := r.full.Begin(n); err != nil {
			r.abort()
			return err
		}
	}
	r.pending, r.inStep = n, true
	return nil
}

// room makes the sliding buffers able to take n more rows after the kept
// ones: it drops rows before the last keep tokens (moving the kept rows to
// the front) and grows the buffers when that is not enough. Dropped rows
// are never needed again except by Truncate, which Restorable accounts for.
func (r *Rotating) room(n int) error {
	if !r.sliding() {
		return nil
	}
	held := r.len - r.base
	if held+n <= r.size {
		return nil
	}
	kept := min(held, r.keep)
	from := held - kept // first row to keep
	// The buffer must take the kept rows and the step, and a move of the
	// kept rows to the front must not overlap them (from ≥ kept), which
	// holds when size ≥ 2·keep + n - 1: a full buffer then has held > 2·keep-1.
	need := 2*r.keep + n
	if need > r.size || from < kept {
		size := max(need, r.size)
		if err := r.grow(size, from, kept); err != nil {
			return err
		}
	} else if kept > 0 {
		for i := range r.sk {
			if r.sk[i].Buf == nil {
				continue
			}
			r.b.Copy(r.sk[i].RowRange(0, kept), r.sk[i].RowRange(from, from+kept))
			r.b.Copy(r.sv[i].RowRange(0, kept), r.sv[i].RowRange(from, from+kept))
		}
	}
	r.base += from
	r.renumber()
	return r.b.Sync()
}

// grow reallocates the sliding buffers with size rows, keeping rows
// [from, from+kept) at the front.
func (r *Rotating) grow(size, from, kept int) error {
	size = min(size, r.spec.Capacity+r.keep) // never more rows than positions can use
	for i, l := range r.spec.Layers {
		if l.Window == 0 {
			continue
		}
		k, err := r.b.Alloc(r.spec.DType, size, l.KV.K)
		if err != nil {
			return fmt.Errorf("kvcache: %w", err)
		}
		v, err := r.b.Alloc(r.spec.DType, size, l.KV.V)
		if err != nil {
			return fmt.Errorf("kvcache: %w", err)
		}
		if kept > 0 {
			r.b.Copy(k.RowRange(0, kept), r.sk[i].RowRange(from, from+kept))
			r.b.Copy(v.RowRange(0, kept), r.sv[i].RowRange(from, from+kept))
		}
		r.sk[i], r.sv[i] = k, v
	}
	r.size = size
	r.kpos = make([]int32, size)
	return nil
}

func (r *Rotating) renumber() {
	for j := range r.kpos {
		r.kpos[j] = int32(r.base + j)
	}
}

// Update implements Cache. A sliding layer's view holds the last Window-1
// tokens before the step and the step's tokens, in position order, with
// their positions in KPos; a full-attention layer's view is the Standard
// one.
func (r *Rotating) Update(layer int, k, v kernels.Tensor) (View, error) {
	if !r.inStep {
		return View{}, fmt.Errorf("kvcache: Update outside a step (call Begin)")
	}
	if layer < 0 || layer >= len(r.fullIdx) {
		return View{}, fmt.Errorf("kvcache: layer %d of %d", layer, len(r.fullIdx))
	}
	if fi := r.fullIdx[layer]; fi >= 0 {
		return r.full.Update(fi, k, v)
	}
	if k.Rows != r.pending || v.Rows != r.pending {
		return View{}, fmt.Errorf("kvcache: layer %d: %d key and %d value rows for a step of %d", layer, k.Rows, v.Rows, r.pending)
	}
	at := r.len - r.base
	end := at + r.pending
	r.b.Copy(r.sk[layer].RowRange(at, end), k)
	r.b.Copy(r.sv[layer].RowRange(at, end), v)
	// Only the layer's own window before the step is visible to the step.
	from := max(0, at-(r.spec.Layers[layer].Window-1))
	return View{
		K: r.sk[layer].RowRange(from, end), V: r.sv[layer].RowRange(from, end),
		NumKeys: end - from, KPos: r.kpos[from:end:end],
	}, nil
}

// Commit implements Cache. Snapshots requested inside the step are taken
// now, while every row they need is still in the buffers.
func (r *Rotating) Commit() {
	if !r.inStep {
		return
	}
	if r.full != nil {
		r.full.Commit()
	}
	r.len += r.pending
	r.snap.take(r.len-r.pending, r.len, r.copyOut)
	r.pending, r.inStep = 0, false
}

// abort drops the step in progress (its rows past Len are ignored).
func (r *Rotating) abort() {
	r.snap.unreserve()
	if r.full != nil && r.inStep {
		_ = r.full.Truncate(r.full.Len())
	}
	r.pending, r.inStep = 0, false
}

// exact reports whether the buffers still hold every row a sequence cut
// back to n needs: positions max(0, n-keep) … n-1.
func (r *Rotating) exact(n int) bool { return !r.sliding() || max(0, n-r.keep) >= r.base }

// Truncate implements Cache. Cutting back to n < Len() is exact when the
// sliding buffers still hold the last Window-1 tokens before n; otherwise
// it restores the snapshot at n (which stays available). Every snapshot
// and request after n is forgotten. Without either it returns an error
// wrapping ErrNoSnapshot and changes nothing.
func (r *Rotating) Truncate(n int) error {
	if n < 0 || n > r.len {
		return fmt.Errorf("kvcache: truncate to %d of %d tokens", n, r.len)
	}
	r.abort()
	if n == r.len {
		return nil
	}
	switch w, ok := r.snap.at[n]; {
	case n == 0 || r.exact(n):
	case ok:
		r.copyIn(w, n)
	default:
		return fmt.Errorf("kvcache: truncate to %d tokens: %w (the sliding windows hold positions %d… and snapshots exist at %v; request one with SnapshotAt before the step that reaches it)",
			n, ErrNoSnapshot, r.base, r.Snapshots())
	}
	if r.full != nil {
		if err := r.full.Truncate(n); err != nil {
			return err
		}
	}
	if n == 0 {
		r.base = 0
		r.renumber()
	}
	r.snap.dropAfter(n)
	r.len = n
	return r.b.Sync()
}

// copyOut copies the sliding rows as of position p (all in the buffers)
// into w.
func (r *Rotating) copyOut(w *window, p int) {
	w.rows = min(p, r.keep)
	at := p - w.rows - r.base
	for i := range r.sk {
		if r.sk[i].Buf == nil || w.rows == 0 {
			continue
		}
		r.b.Copy(w.sk[i].RowRange(0, w.rows), r.sk[i].RowRange(at, at+w.rows))
		r.b.Copy(w.sv[i].RowRange(0, w.rows), r.sv[i].RowRange(at, at+w.rows))
	}
}

// copyIn makes the buffers hold the window w as of position p: its rows
// at the front, base = p - rows.
func (r *Rotating) copyIn(w *window, p int) {
	for i := range r.sk {
		if r.sk[i].Buf == nil || w.rows == 0 {
			continue
		}
		r.b.Copy(r.sk[i].RowRange(0, w.rows), w.sk[i].RowRange(0, w.rows))
		r.b.Copy(r.sv[i].RowRange(0, w.rows), w.sv[i].RowRange(0, w.rows))
	}
	r.base = p - w.rows
	r.renumber()
}

// SnapshotAt implements Snapshotter: the sliding rows as of pos are kept
// so that Truncate(pos) works after the buffers have moved on. A position
// at Len() is taken at once; a later one by the step that reaches it.
func (r *Rotating) SnapshotAt(pos int) error {
	if r.sk == nil {
		return fmt.Errorf("kvcache: use after Release")
	}
	if pos < r.len || pos > r.spec.Capacity {
		return fmt.Errorf("kvcache: snapshot at %d: outside [%d, %d] (the sequence holds %d tokens)", pos, r.len, r.spec.Capacity, r.len)
	}
	if pos == r.len {
		w, err := r.snap.get(r.newWindow)
		if err != nil {
			return err
		}
		r.copyOut(w, pos)
		r.snap.keep(pos, w)
		return r.b.Sync()
	}
	return r.snap.request(pos, r.len, r.pending, r.inStep)
}

// Snapshots implements Snapshotter.
func (r *Rotating) Snapshots() []int { return r.snap.positions() }

// DropSnapshot implements Snapshotter; it also cancels a pending request.
func (r *Rotating) DropSnapshot(pos int) { r.snap.drop(pos) }

// Restorable implements Snapshotter: Len() when n ≥ Len(), n itself when
// the sliding buffers still hold what position n needs, else the latest
// snapshot ≤ n, or 0.
func (r *Rotating) Restorable(n int) int {
	if n >= r.len {
		return r.len
	}
	if n < 0 {
		return 0
	}
	if r.exact(n) {
		return n
	}
	return r.snap.latest(n)
}

// newWindow allocates snapshot buffers.
func (r *Rotating) newWindow() (*window, error) {
	w := &window{sk: make([]kernels.Tensor, len(r.spec.Layers)), sv: make([]kernels.Tensor, len(r.spec.Layers))}
	if r.keep == 0 {
		return w, nil
	}
	for i, l := range r.spec.Layers {
		if l.Window == 0 {
			continue
		}
		var err error
		if w.sk[i], err = r.b.Alloc(r.spec.DType, r.keep, l.KV.K); err != nil {
			return nil, fmt.Errorf("kvcache: snapshot: %w", err)
		}
		if w.sv[i], err = r.b.Alloc(r.spec.DType, r.keep, l.KV.V); err != nil {
			return nil, fmt.Errorf("kvcache: snapshot: %w", err)
		}
	}
	return w, nil
}

// Release implements Cache.
func (r *Rotating) Release() {
	if r.full != nil {
		r.full.Release()
	}
	r.sk, r.sv, r.kpos = nil, nil, nil
	r.snap = snapshots[*window]{}
	r.size, r.base, r.len, r.pending, r.inStep = 0, 0, 0, 0, false
}
