package moe

import (
	"context"
	"fmt"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/model"
)

// Block is a routed-expert feed-forward layer: a router picks K experts per
// token, the batch's tokens are grouped by expert, each chosen expert runs
// once over its group (grouped matmuls), and the weighted outputs are summed
// per token in expert order.
type Block struct {
	Layer   int
	Router  *model.Linear
	Routing kernels.Routing
	Store   Store
	Act     kernels.Activation
	// Mask, when set, is added to the router logits (see NewExpertMask).
	Mask kernels.Tensor
	// ExpertScale, when set, multiplies each chosen expert's routing
	// weight after selection and normalization, indexed by expert
	// (gemma4's router.per_expert_scale).
	ExpertScale []float32
	// MaxSlots bounds the (token, expert) slots of one pass of the expert
	// pipeline, which bounds its buffers (0: 1024).
	MaxSlots int
	// Next, when set, is the next MoE layer's block. With a store that
	// takes hints (expert streaming) and a step of at most lookaheadRows
	// rows, its router also runs on this layer's router input and the
	// experts it picks are hinted to the store, so their reads overlap this
	// layer's work ("early routing": the residual stream changes little
	// from one layer to the next, so the guess is often right; a wrong one
	// costs a read, never a result).
	Next *Block
}

// Hinter is a store that can start reading experts a later layer will
// probably need, without a demand.
type Hinter interface {
	Hint(ctx context.Context, layer int, experts []int)
}

// lookaheadRows is the most rows a step may have for early routing:
// decoding steps, where reads are on the critical path; a prefill chunk
// demands most experts anyway.
const lookaheadRows = 8

// lookahead routes routerX with the next block's router and hints the
// chosen experts to the store.
func (m *Block) lookahead(ctx context.Context, b kernels.Backend, ws *model.Workspace, routerX kernels.Tensor) {
	n := m.Next
	h, ok := m.Store.(Hinter)
	if n == nil || !ok || routerX.IsZero() || routerX.Rows > lookaheadRows {
		return
	}
	t, k := routerX.Rows, n.Routing.K
	ne := m.Store.Experts(n.Layer)
	logits, err := ws.Get("moe.next.logits", t, ne)
	if err != nil || ne == 0 {
		return
	}
	n.Router.Forward(b, logits, routerX)
	if !n.Mask.IsZero() {
		b.Add(logits, logits, n.Mask)
	}
	idx, wts := ws.Int32s("moe.next.idx", t*k), ws.Float32s("moe.next.w", t*k)
	if err := b.Route(logits, n.Routing, idx, wts); err != nil {
		return
	}
	seen := make(map[int32]bool, len(idx))
	experts := make([]int, 0, len(idx))
	for _, e := range idx {
		if e >= 0 && int(e) < ne && !seen[e] {
			seen[e] = true
			experts = append(experts, int(e))
		}
	}
	h.Hint(ctx, n.Layer, experts)
}

// Dispatch is the host-side plan of one step: which rows go to which
// expert, in expert order.
type Dispatch struct {
	// Experts lists the experts with at least one row, ascending.
	Experts []int
	// Offs[i] is where expert Experts[i]'s rows start in the grouped
	// order; Offs[len(Experts)] is the number of (token, expert) slots.
	Offs []int
	// Rows[s] is the token row of slot s; Weights[s] its routing weight.
	Rows    []int32
	Weights []float32
}

// Plan groups routing results (idx and w are T×K, row-major) by expert:
// experts ascending, tokens ascending within an expert.
func Plan(idx []int32, w []float32, k, experts int, d *Dispatch) error {
	count := make([]int, experts)
	for _, e := range idx {
		if e < 0 || int(e) >= experts {
			return fmt.Errorf("moe: router chose expert %d of %d", e, experts)
		}
		count[e]++
	}
	d.Experts, d.Offs = d.Experts[:0], d.Offs[:0]
	start := make([]int, experts)
	s := 0
	for e, c := range count {
		start[e] = s
		if c > 0 {
			d.Experts = append(d.Experts, e)
			d.Offs = append(d.Offs, s)
		}
		s += c
	}
	d.Offs = append(d.Offs, s)
	d.Rows = resize(d.Rows, s)
	d.Weights = resizeF(d.Weights, s)
	for i, e := range idx {
		p := start[e]
		start[e]++
		d.Rows[p] = int32(i / k)
		d.Weights[p] = w[i]
	}
	return nil
}

func resize(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}

func resizeF(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// Forward writes the block's output for x into out (same shape).
func (m *Block) Forward(ctx context.Context, b kernels.Backend, ws *model.Workspace, x, out kernels.Tensor) error {
	return m.ForwardRouted(ctx, b, ws, x, x, out)
}

// ForwardRouted is Forward with the router reading routerX (same rows as
// x) while the experts read x: gemma4 routes from a differently normed
// copy of the residual stream than the one its experts see.
func (m *Block) ForwardRouted(ctx context.Context, b kernels.Backend, ws *model.Workspace, routerX, x, out kernels.Tensor) error {
	t := x.Rows
	if routerX.Rows != t {
		return fmt.Errorf("moe layer %d: %d router rows for %d token rows", m.Layer, routerX.Rows, t)
	}
	ne := m.Store.Experts(m.Layer)
	k := m.Routing.K
	logits, err := ws.Get("moe.logits", t, ne)
	if err != nil {
		return err
	}
	m.Router.Forward(b, logits, routerX)
	if !m.Mask.IsZero() {
		b.Add(logits, logits, m.Mask)
	}
	idx := ws.Int32s("moe.idx", t*k)
	wts := ws.Float32s("moe.w", t*k)
	if err := b.Route(logits, m.Routing, idx, wts); err != nil {
		return fmt.Errorf("moe layer %d: %w", m.Layer, err)
	}
	if m.ExpertScale != nil {
		for i, e := range idx {
			if e < 0 || int(e) >= len(m.ExpertScale) {
				return fmt.Errorf("moe layer %d: router chose expert %d of %d scaled ones", m.Layer, e, len(m.ExpertScale))
			}
			wts[i] *= m.ExpertScale[e]
		}
	}
	return m.forwardChosen(ctx, b, ws, routerX, x, out, idx, wts)
}

// ForwardChosen runs the experts already chosen for each row of x —
// idx and wts hold K expert ids and weights per row, row-major — and
// writes their weighted sum into out (DeepSeek-V4's hash layers choose by
// token id, not by the router). The router, Mask and ExpertScale are not
// used.
func (m *Block) ForwardChosen(ctx context.Context, b kernels.Backend, ws *model.Workspace, x, out kernels.Tensor, idx []int32, wts []float32) error {
	return m.forwardChosen(ctx, b, ws, kernels.Tensor{}, x, out, idx, wts)
}

// forwardChosen is ForwardChosen; routerX, when set, feeds early routing
// of the next layer once this layer's reads are under way.
func (m *Block) forwardChosen(ctx context.Context, b kernels.Backend, ws *model.Workspace, routerX, x, out kernels.Tensor, idx []int32, wts []float32) error {
	t, k := x.Rows, m.Routing.K
	ne := m.Store.Experts(m.Layer)
	if len(idx) != t*k || len(wts) != t*k {
		return fmt.Errorf("moe layer %d: %d expert ids and %d weights for %d rows of %d", m.Layer, len(idx), len(wts), t, k)
	}
	var d Dispatch
	d.Rows, d.Weights = ws.Int32s("moe.rows", t*k), ws.Float32s("moe.slotw", t*k)
	if err := Plan(idx, wts, k, ne, &d); err != nil {
		return fmt.Errorf("moe layer %d: %w", m.Layer, err)
	}
	m.Store.Prefetch(ctx, m.Layer, d.Experts)
	m.lookahead(ctx, b, ws, routerX)
	b.Fill(out, 0)
	limit := m.MaxSlots
	if limit <= 0 {
		limit = defaultMaxSlots
	}
	if s, ok := m.Store.(Streamer); ok {
		return m.streamed(ctx, b, ws, x, out, s, &d, limit)
	}
	experts, err := m.Store.Acquire(ctx, m.Layer, d.Experts)
	if err != nil {
		return fmt.Errorf("moe layer %d: %w", m.Layer, err)
	}
	defer m.Store.Release(m.Layer, d.Experts)

	// Run the experts in consecutive runs of at most MaxSlots (token,
	// expert) slots, so the intermediate buffers stay small for long
	// prompts; every expert still runs once, and the outputs are summed
	// per token in expert order as before.
	for a := 0; a < len(experts); {
		e := a + 1
		for e < len(experts) && d.Offs[e+1]-d.Offs[a] <= limit {
			e++
		}
		if err := m.run(b, ws, x, out, experts[a:e], &d, a, e); err != nil {
			return err
		}
		a = e
	}
	return nil
}

// Streamer is a Store whose Acquire may wait for reads (expert streaming).
// The block then computes the experts already read first — the longest
// ready prefix, in expert order — while the reads of the rest complete,
// then acquires and computes the rest. The runs and the order of the sums
// are the same as with one Acquire, so the output is bit for bit the same.
type Streamer interface {
	Store
	// Ready returns how many of experts, from the first, can be acquired
	// without waiting.
	Ready(layer int, experts []int) int
}

func (m *Block) streamed(ctx context.Context, b kernels.Backend, ws *model.Workspace, x, out kernels.Tensor, s Streamer, d *Dispatch, limit int) error {
	n := len(d.Experts)
	// At most two parts (each cut further by limit), so splitting costs
	// one more pass of the pipeline, not one per expert.
	parts := []int{0, n}
	if r := s.Ready(m.Layer, d.Experts); r > 0 && r < n {
		parts = []int{0, r, n}
	}
	for p := 0; p+1 < len(parts); p++ {
		lo, hi := parts[p], parts[p+1]
		ids := d.Experts[lo:hi]
		experts, err := s.Acquire(ctx, m.Layer, ids)
		if err != nil {
			return fmt.Errorf("moe layer %d: %w", m.Layer, err)
		}
		for a := lo; a < hi && err == nil; {
			e := a + 1
			for e < hi && d.Offs[e+1]-d.Offs[a] <= limit {
				e++
			}
			err = m.run(b, ws, x, out, experts[a-lo:e-lo], d, a, e)
			a = e
		}
		s.Release(m.Layer, ids)
		if err != nil {
			return err
		}
	}
	return nil
}

// defaultMaxSlots bounds the (token, expert) slots one pass of the expert
// pipeline handles (Block.MaxSlots overrides it).
const defaultMaxSlots = 1024

// run computes experts[i] = the experts d.Experts[a+i] for their slots and
// adds their weighted outputs into out.
func (m *Block) run(b kernels.Backend, ws *model.Workspace, x, out kernels.Tensor, experts []*Expert, d *Dispatch, a, e int) error {
	h := x.Cols
	base := d.Offs[a]
	offs := make([]int, e-a+1)
	for i := range offs {
		offs[i] = d.Offs[a+i] - base
	}
	rows, wts := d.Rows[base:d.Offs[e]], d.Weights[base:d.Offs[e]]
	slots := len(rows)
	inter := experts[0].Width()
	// Gathered rows are only needed by backends without a fused grouped
	// matmul; the fused one reads x through the row index.
	scratch := func(n int) (kernels.Tensor, error) { return ws.Get("moe.x", n, h) }
	var gate, up kernels.Tensor
	var err error
	if experts[0].GateUp != nil {
		gu, err := ws.Get("moe.gu", slots, 2*inter)
		if err != nil {
			return err
		}
		if err := kernels.MatMulGrouped(b, gu, x, rows, collect(experts, func(e *Expert) kernels.Weight { return e.GateUp }), offs, scratch); err != nil {
			return err
		}
		for i, ex := range experts {
			if !ex.GateUpBias.IsZero() {
				r := gu.RowRange(offs[i], offs[i+1])
				b.Add(r, r, ex.GateUpBias)
			}
		}
		gate, up = gu.ColRange(0, inter), gu.ColRange(inter, 2*inter)
		if experts[0].Interleaved {
			if gate, err = ws.Get("moe.act", slots, inter); err != nil {
				return err
			}
			if err := kernels.ActivateInterleaved(b, gate, gu, m.Act); err != nil {
				return fmt.Errorf("moe layer %d: %w", m.Layer, err)
			}
			up = kernels.Tensor{} // activated already
		}
	} else {
		if gate, err = ws.Get("moe.g", slots, inter); err != nil {
			return err
		}
		if up, err = ws.Get("moe.u", slots, inter); err != nil {
			return err
		}
		if err := kernels.MatMulGrouped(b, gate, x, rows, collect(experts, func(e *Expert) kernels.Weight { return e.Gate }), offs, scratch); err != nil {
			return err
		}
		if err := kernels.MatMulGrouped(b, up, x, rows, collect(experts, func(e *Expert) kernels.Weight { return e.Up }), offs, scratch); err != nil {
			return err
		}
		for i, ex := range experts {
			r0, r1 := offs[i], offs[i+1]
			if !ex.GateBias.IsZero() {
				b.Add(gate.RowRange(r0, r1), gate.RowRange(r0, r1), ex.GateBias)
			}
			if !ex.UpBias.IsZero() {
				b.Add(up.RowRange(r0, r1), up.RowRange(r0, r1), ex.UpBias)
			}
		}
	}
	// The activation overwrites the gate values in place.
	if !up.IsZero() {
		b.Activate(gate, gate, up, m.Act)
	}
	y, err := ws.Get("moe.y", slots, h)
	if err != nil {
		return err
	}
	if err := kernels.MatMulGrouped(b, y, gate, nil, collect(experts, func(e *Expert) kernels.Weight { return e.Down }), offs, scratch); err != nil {
		return err
	}
	for i, ex := range experts {
		if !ex.DownBias.IsZero() {
			r := y.RowRange(offs[i], offs[i+1])
			b.Add(r, r, ex.DownBias)
		}
	}
	b.ScatterAdd(out, y, rows, wts)
	return nil
}

func collect(es []*Expert, f func(*Expert) kernels.Weight) []kernels.Weight {
	out := make([]kernels.Weight, len(es))
	for i, e := range es {
		out[i] = f(e)
	}
	return out
}
