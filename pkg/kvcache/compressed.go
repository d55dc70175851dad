package kvcache

import (
	"fmt"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/kvcache/kvsize"
)

// CompressedLayer is one layer of a compressed cache (see kvsize).
type CompressedLayer = kvsize.CompressedLayer

// CompressedSpec describes a compressed cache: the cache of DeepSeek-V4,
// whose every layer attends to a sliding window of one shared K=V head and
// (compressed layers) to entries that each pool Ratio tokens.
type CompressedSpec struct {
	Layers []CompressedLayer
	// DType stores window rows and entries (F32, F16 or BF16). The
	// compressors' pending projections and the indexer's keys are f32.
	DType    kernels.DType
	Capacity int
}

// Bytes is the memory a sequence of tokens tokens needs: the same function
// mach check's estimate calls (kvsize.Compressed).
func (s CompressedSpec) Bytes(tokens int) int64 {
	return kvsize.Compressed(s.Layers, tokens, s.DType.Size())
}

// CompressedView is what one layer's attention reads in a step. KV holds
// the layer's K=V rows: window rows WinFirst … WinFirst+len(WinPos)-1 at the
// positions WinPos (ascending: the tokens before the step its window can
// see, then the step's tokens), and compressed entry j at row EntryRow+j
// for j < Entries (the entries closed by the end of the step).
type CompressedView struct {
	KV       kernels.Tensor
	WinFirst int
	WinPos   []int32
	EntryRow int
	Entries  int
}

// CompressedCache is implemented by caches for compressed attention.
type CompressedCache interface {
	Cache
	// CompressedLayer returns layer's handle for the step in progress.
	CompressedLayer(layer int) (*CompressedStep, error)
}

// Compressed is the compressed cache. Per layer it keeps:
//
//   - the window: like Rotating's sliding layers, rows of consecutive
//     positions base, base+1, … in a buffer bounded by the window and the
//     largest step; between steps only the last Window-1 tokens are needed;
//   - the compressed entries after the window rows in the same buffer
//     (entry j pools the tokens of window j and, overlapping, j-1; it is
//     written by the step that closes window j and never changes);
//   - on the host, the compressors' projections of the tokens whose
//     windows are not closed yet (and for an overlapping compressor the
//     window before), and the indexer's compressed keys.
//
// A step writes after what is committed, so an aborted step changes
// nothing. Truncate is exact while the window and pending projections of
// the cut point are still held; further back it needs a snapshot taken with
// SnapshotAt (as Rotating), or n = 0.
type Compressed struct {
	b      kernels.Backend
	spec   CompressedSpec
	keep   int // window rows a step needs from before it: max(Window)-1
	layers []*compLayer

	// window rows: row j of every layer holds position base+j for
	// j < len+pending-base; size rows allocated.
	size int
	base int
	kpos []int32

	len  int
	snap snapshots[*compSnap]

	pending int
	inStep  bool
	steps   []CompressedStep
}

type compLayer struct {
	spec   CompressedLayer
	kv     kernels.Tensor // size + entCap rows
	entCap int
	raw    [2]*rawRows // main compressor, indexer compressor (nil when absent)
	index  []float32   // indexer keys, IndexDim per entry
}

// rawRows holds a compressor's f32 projections of consecutive positions
// base, base+1, …
type rawRows struct {
	width, keep int
	base        int
	data        []float32
}

func (r *rawRows) rows() int { return len(r.data) / r.width }

// compSnap is the state a cut back to a position needs: every layer's last
// window rows and pending projections as of that position.
type compSnap struct {
	rows int // window rows held
	win  []kernels.Tensor
	raw  [][2][]float32
	rawB [][2]int // first position of each raw copy
}

var (
	_ CompressedCache = (*Compressed)(nil)
	_ Snapshotter     = (*Compressed)(nil)
)

// NewCompressed returns an empty compressed cache on backend b.
func NewCompressed(b kernels.Backend, spec CompressedSpec) (*Compressed, error) {
	if spec.Capacity <= 0 || len(spec.Layers) == 0 {
		return nil, fmt.Errorf("kvcache: capacity %d for %d layers", spec.Capacity, len(spec.Layers))
	}
	switch spec.DType {
	case kernels.F32, kernels.F16, kernels.BF16:
	default:
		return nil, fmt.Errorf("kvcache: storage type %s", spec.DType)
	}
	c := &Compressed{b: b, spec: spec, snap: newSnapshots[*compSnap]()}
	for i, l := range spec.Layers {
		if l.HeadDim <= 0 || l.Window <= 0 || l.Ratio < 0 || l.IndexDim < 0 || (l.IndexDim > 0 && l.Ratio == 0) {
			return nil, fmt.Errorf("kvcache: compressed layer %d: head dim %d, window %d, ratio %d, index dim %d", i, l.HeadDim, l.Window, l.Ratio, l.IndexDim)
		}
		c.keep = max(c.keep, l.Window-1)
		cl := &compLayer{spec: l}
		if l.Ratio > 0 {
			cl.raw[0] = &rawRows{width: l.RawWidth(), keep: l.RawKeep()}
		}
		if l.IndexDim > 0 {
			cl.raw[1] = &rawRows{width: l.IndexRawWidth(), keep: l.IndexRawKeep()}
		}
		c.layers = append(c.layers, cl)
	}
	c.steps = make([]CompressedStep, len(c.layers))
	return c, nil
}

// Spec returns the cache's shape.
func (c *Compressed) Spec() CompressedSpec { return c.spec }

// Len implements Cache.
func (c *Compressed) Len() int { return c.len }

// Capacity implements Cache.
func (c *Compressed) Capacity() int { return c.spec.Capacity }

// Bytes returns the memory the cache holds now: window and entry rows,
// the host-side projections and indexer keys, and the snapshots.
func (c *Compressed) Bytes() int {
	dt := c.spec.DType.Size()
	n := 0
	for _, l := range c.layers {
		n += (c.size + l.entCap) * l.spec.HeadDim * dt
		for _, r := range l.raw {
			if r != nil {
				n += 4 * cap(r.data)
			}
		}
		n += 4 * cap(l.index)
	}
	for _, s := range c.snap.all() {
		n += c.snapBytes(s)
	}
	return n
}

func (c *Compressed) snapBytes(s *compSnap) int {
	n := 0
	for i, l := range c.layers {
		if s.win != nil && s.win[i].Buf != nil {
			n += c.keep * l.spec.HeadDim * c.spec.DType.Size()
		}
		if s.raw != nil {
			n += 4 * (cap(s.raw[i][0]) + cap(s.raw[i][1]))
		}
	}
	return n
}

// WindowRows returns the window rows each layer's buffer holds now; it
// depends on the window and the largest step, never on Len.
func (c *Compressed) WindowRows() int { return c.size }

// Begin implements Cache.
func (c *Compressed) Begin(n int) error {
	if err := checkBegin(c.layers == nil, c.len, n, c.spec.Capacity); err != nil {
		return err
	}
	c.abort()
	if err := c.room(n); err != nil {
		return err
	}
	if err := c.snap.reserve(c.len, c.len+n, c.newSnap); err != nil {
		c.abort()
		return err
	}
	for i := range c.steps {
		c.steps[i] = CompressedStep{c: c, layer: i}
	}
	for _, l := range c.layers {
		for _, r := range l.raw {
			if r != nil {
				r.trim(c.len)
			}
		}
	}
	c.pending, c.inStep = n, true
	return nil
}

// trim keeps the rows of the last keep positions before end and drops any
// after it (an aborted step's).
func (r *rawRows) trim(end int) {
	from := max(r.base, end-r.keep)
	stop := min(end, r.base+r.rows())
	if stop <= from {
		r.data, r.base = r.data[:0], end
		return
	}
	copy(r.data, r.data[(from-r.base)*r.width:(stop-r.base)*r.width])
	r.data = r.data[:(stop-from)*r.width]
	r.base = from
}

// room makes every layer's buffer take n more window rows after the kept
// ones and the entries the step can close.
func (c *Compressed) room(n int) error {
	held := c.len - c.base
	size := c.size
	from, kept := 0, held
	if held+n > size {
		kept = min(held, c.keep)
		from = held - kept
		size = max(size, 2*c.keep+n)
	}
	grow := size != c.size
	for _, l := range c.layers {
		if l.spec.Entries(c.len+n) > l.entCap || l.kv.Buf == nil {
			grow = true
		}
	}
	if !grow {
		if from > 0 && kept > 0 {
			for _, l := range c.layers {
				c.b.Copy(l.kv.RowRange(0, kept), l.kv.RowRange(from, from+kept))
			}
		}
	} else {
		size = min(size, c.spec.Capacity+c.keep)
		for _, l := range c.layers {
			entries := l.spec.Entries(c.len)
			entCap := l.entCap
			if need := l.spec.Entries(c.len + n); need > entCap {
				entCap = min(max(need, 2*entCap, 16), l.spec.Entries(c.spec.Capacity))
			}
			kv, err := c.b.Alloc(c.spec.DType, size+entCap, l.spec.HeadDim)
			if err != nil {
				return fmt.Errorf("kvcache: %w", err)
			}
			if l.kv.Buf != nil {
				if kept > 0 {
					c.b.Copy(kv.RowRange(0, kept), l.kv.RowRange(from, from+kept))
				}
				if entries > 0 {
					c.b.Copy(kv.RowRange(size, size+entries), l.kv.RowRange(c.size, c.size+entries))
				}
			}
			l.kv, l.entCap = kv, entCap
		}
		c.size = size
		c.kpos = make([]int32, size)
	}
	c.base += from
	for j := range c.kpos {
		c.kpos[j] = int32(c.base + j)
	}
	return c.b.Sync()
}

// CompressedLayer implements CompressedCache.
func (c *Compressed) CompressedLayer(layer int) (*CompressedStep, error) {
	if !c.inStep {
		return nil, fmt.Errorf("kvcache: CompressedLayer outside a step (call Begin)")
	}
	if layer < 0 || layer >= len(c.layers) {
		return nil, fmt.Errorf("kvcache: layer %d of %d", layer, len(c.layers))
	}
	return &c.steps[layer], nil
}

// Update implements Cache; a compressed cache is written through
// CompressedLayer.
func (c *Compressed) Update(layer int, k, v kernels.Tensor) (View, error) {
	return View{}, fmt.Errorf("kvcache: layer %d: a compressed cache takes its rows through CompressedLayer, not Update", layer)
}

// CompressedStep is one layer's part of a step of a compressed cache. The
// model calls PutWindow once, PutRaw once per compressor, PutEntries (and
// PutIndexEntries) with the entries the step closes, then View.
type CompressedStep struct {
	c     *Compressed
	layer int
	// what the step has written
	window, entries, indexEntries bool
	raw                           [2]bool
}

// Start and Steps return the step's first position and token count.
func (s *CompressedStep) Start() int { return s.c.len }

// Steps returns the number of tokens in the step.
func (s *CompressedStep) Steps() int { return s.c.pending }

// Spec returns the layer's shape.
func (s *CompressedStep) Spec() CompressedLayer { return s.c.layers[s.layer].spec }

// PutWindow stores the step's K=V rows (n × HeadDim).
func (s *CompressedStep) PutWindow(kv kernels.Tensor) error {
	c, l := s.c, s.c.layers[s.layer]
	if kv.Rows != c.pending || kv.Cols != l.spec.HeadDim {
		return fmt.Errorf("kvcache: layer %d: %v for a step of %d rows of %d", s.layer, kv, c.pending, l.spec.HeadDim)
	}
	at := c.len - c.base
	c.b.Copy(l.kv.RowRange(at, at+c.pending), kv)
	s.window = true
	return nil
}

// PutRaw stores the step's projections for compressor which (0: main, 1:
// indexer): n rows of the compressor's raw width.
func (s *CompressedStep) PutRaw(which int, rows []float32) error {
	r, err := s.rawOf(which)
	if err != nil {
		return err
	}
	if s.raw[which] {
		return fmt.Errorf("kvcache: layer %d: compressor %d written twice in one step", s.layer, which)
	}
	if len(rows) != s.c.pending*r.width {
		return fmt.Errorf("kvcache: layer %d: %d raw values for %d rows of %d", s.layer, len(rows), s.c.pending, r.width)
	}
	if r.rows() == 0 {
		r.base = s.c.len
	}
	if r.base+r.rows() != s.c.len {
		return fmt.Errorf("kvcache: layer %d: compressor %d holds positions %d…%d, the step starts at %d", s.layer, which, r.base, r.base+r.rows()-1, s.c.len)
	}
	r.data = append(r.data, rows...)
	s.raw[which] = true
	return nil
}

// Raw returns compressor which's projections of positions first … Start()+
// Steps()-1: the pending ones from before the step and, once PutRaw ran,
// the step's.
func (s *CompressedStep) Raw(which int) (rows []float32, first int, err error) {
	r, err := s.rawOf(which)
	if err != nil {
		return nil, 0, err
	}
	return r.data, r.base, nil
}

func (s *CompressedStep) rawOf(which int) (*rawRows, error) {
	l := s.c.layers[s.layer]
	if which < 0 || which > 1 || l.raw[which] == nil {
		return nil, fmt.Errorf("kvcache: layer %d has no compressor %d", s.layer, which)
	}
	return l.raw[which], nil
}

// NewEntries returns the number of entries the step closes.
func (s *CompressedStep) NewEntries() int {
	sp := s.Spec()
	return sp.Entries(s.c.len+s.c.pending) - sp.Entries(s.c.len)
}

// PutEntries stores the entries the step closes (NewEntries() rows).
func (s *CompressedStep) PutEntries(rows kernels.Tensor) error {
	c, l := s.c, s.c.layers[s.layer]
	if rows.Rows != s.NewEntries() || rows.Cols != l.spec.HeadDim {
		return fmt.Errorf("kvcache: layer %d: %v for %d new entries of %d", s.layer, rows, s.NewEntries(), l.spec.HeadDim)
	}
	at := c.size + l.spec.Entries(c.len)
	c.b.Copy(l.kv.RowRange(at, at+rows.Rows), rows)
	s.entries = true
	return nil
}

// PutIndexEntries stores the indexer keys of the entries the step closes.
func (s *CompressedStep) PutIndexEntries(rows []float32) error {
	l := s.c.layers[s.layer]
	if l.spec.IndexDim == 0 || len(rows) != s.NewEntries()*l.spec.IndexDim {
		return fmt.Errorf("kvcache: layer %d: %d indexer values for %d new entries of %d", s.layer, len(rows), s.NewEntries(), l.spec.IndexDim)
	}
	l.index = append(l.index[:l.spec.Entries(s.c.len)*l.spec.IndexDim], rows...)
	s.indexEntries = true
	return nil
}

// IndexEntries returns the indexer keys of every entry closed by the end
// of the step (IndexDim values each).
func (s *CompressedStep) IndexEntries() []float32 {
	l := s.c.layers[s.layer]
	return l.index[:min(len(l.index), l.spec.Entries(s.c.len+s.c.pending)*l.spec.IndexDim)]
}

// View returns what the layer's attention reads.
func (s *CompressedStep) View() CompressedView {
	c, l := s.c, s.c.layers[s.layer]
	at := c.len - c.base
	end := at + c.pending
	from := max(0, at-(l.spec.Window-1))
	return CompressedView{
		KV: l.kv, WinFirst: from, WinPos: c.kpos[from:end:end],
		EntryRow: c.size, Entries: l.spec.Entries(c.len + c.pending),
	}
}

// Commit implements Cache. Snapshots requested inside the step are taken
// now, while the rows they need are still held.
func (c *Compressed) Commit() {
	if !c.inStep {
		return
	}
	c.len += c.pending
	c.snap.take(c.len-c.pending, c.len, c.copyOut)
	c.pending, c.inStep = 0, false
}

func (c *Compressed) abort() {
	c.snap.unreserve()
	c.pending, c.inStep = 0, false
}

// exact reports whether the buffers hold everything a sequence cut back to
// n needs: the window rows and every compressor's pending projections.
func (c *Compressed) exact(n int) bool {
	if max(0, n-c.keep) < c.base {
		return false
	}
	for _, l := range c.layers {
		for _, r := range l.raw {
			if r != nil && max(0, n-r.keep) < r.base && n > 0 {
				return false
			}
		}
	}
	return true
}

// Truncate implements Cache: exact while the cut point's window and pending
// projections are held, else from the snapshot at n; otherwise it returns
// an error wrapping ErrNoSnapshot and changes nothing.
func (c *Compressed) Truncate(n int) error {
	if n < 0 || n > c.len {
		return fmt.Errorf("kvcache: truncate to %d of %d tokens", n, c.len)
	}
	c.abort()
	if n == c.len {
		return nil
	}
	switch s, ok := c.snap.at[n]; {
	case n == 0:
		c.base = 0
		for _, l := range c.layers {
			for _, r := range l.raw {
				if r != nil {
					r.data, r.base = r.data[:0], 0
				}
			}
		}
	case c.exact(n):
		for _, l := range c.layers {
			for _, r := range l.raw {
				if r != nil {
					r.trim(n)
				}
			}
		}
	case ok:
		c.copyIn(s, n)
	default:
		return fmt.Errorf("kvcache: truncate to %d tokens: %w (the windows hold positions %d… and snapshots exist at %v; request one with SnapshotAt before the step that reaches it)",
			n, ErrNoSnapshot, c.base, c.Snapshots())
	}
	for _, l := range c.layers {
		if l.spec.IndexDim > 0 {
			l.index = l.index[:l.spec.Entries(n)*l.spec.IndexDim]
		}
	}
	for j := range c.kpos {
		c.kpos[j] = int32(c.base + j)
	}
	c.snap.dropAfter(n)
	c.len = n
	return c.b.Sync()
}

// copyOut copies the state as of position p (all held) into s.
func (c *Compressed) copyOut(s *compSnap, p int) {
	s.rows = min(p, c.keep)
	at := p - s.rows - c.base
	for i, l := range c.layers {
		if s.rows > 0 {
			c.b.Copy(s.win[i].RowRange(0, s.rows), l.kv.RowRange(at, at+s.rows))
		}
		for w, r := range l.raw {
			if r == nil {
				continue
			}
			from := max(r.base, p-r.keep)
			s.raw[i][w] = append(s.raw[i][w][:0], r.data[(from-r.base)*r.width:(p-r.base)*r.width]...)
			s.rawB[i][w] = from
		}
	}
}

// copyIn makes the buffers hold the state s as of position p.
func (c *Compressed) copyIn(s *compSnap, p int) {
	for i, l := range c.layers {
		if s.rows > 0 {
			c.b.Copy(l.kv.RowRange(0, s.rows), s.win[i].RowRange(0, s.rows))
		}
		for w, r := range l.raw {
			if r != nil {
				r.data = append(r.data[:0], s.raw[i][w]...)
				r.base = s.rawB[i][w]
			}
		}
	}
	c.base = p - s.rows
}

// newSnap allocates snapshot buffers.
func (c *Compressed) newSnap() (*compSnap, error) {
	s := &compSnap{win: make([]kernels.Tensor, len(c.layers)), raw: make([][2][]float32, len(c.layers)), rawB: make([][2]int, len(c.layers))}
	if c.keep > 0 {
		for i, l := range c.layers {
			var err error
			if s.win[i], err = c.b.Alloc(c.spec.DType, c.keep, l.spec.HeadDim); err != nil {
				return nil, fmt.Errorf("kvcache: snapshot: %w", err)
			}
		}
	}
	return s, nil
}

// SnapshotAt implements Snapshotter (see Rotating.SnapshotAt).
func (c *Compressed) SnapshotAt(pos int) error {
	if c.layers == nil {
		return fmt.Errorf("kvcache: use after Release")
	}
	if pos < c.len || pos > c.spec.Capacity {
		return fmt.Errorf("kvcache: snapshot at %d: outside [%d, %d] (the sequence holds %d tokens)", pos, c.len, c.spec.Capacity, c.len)
	}
	if pos == c.len {
		s, err := c.snap.get(c.newSnap)
		if err != nil {
			return err
		}
		c.copyOut(s, pos)
		c.snap.keep(pos, s)
		return c.b.Sync()
	}
	return c.snap.request(pos, c.len, c.pending, c.inStep)
}

// Snapshots implements Snapshotter.
func (c *Compressed) Snapshots() []int { return c.snap.positions() }

// DropSnapshot implements Snapshotter; it also cancels a pending request.
func (c *Compressed) DropSnapshot(pos int) { c.snap.drop(pos) }

// Restorable implements Snapshotter.
func (c *Compressed) Restorable(n int) int {
	if n >= c.len {
		return c.len
	}
	if n <= 0 {
		return 0
	}
	if c.exact(n) {
		return n
	}
	return c.snap.latest(n)
}

// Release implements Cache.
func (c *Compressed) Release() {
	c.layers, c.steps = nil, nil
	c.kpos = nil
	c.snap = snapshots[*compSnap]{}
	c.size, c.base, c.len, c.pending, c.inStep = 0, 0, 0, 0, false
}
