package model

import (
	"github.com/maniac-ai/mach/kernels"
)

// Linear is y = W·x (+ bias).
type Linear struct {
	W    kernels.Weight
	Bias kernels.Tensor // 1×out, or zero
}

// Forward writes the layer's output for every row of x into dst.
func (l *Linear) Forward(b kernels.Backend, dst, x kernels.Tensor) {
	b.MatMul(dst, x, l.W)
	if !l.Bias.IsZero() {
		b.Add(dst, dst, l.Bias)
	}
}

// LoadLinear binds base (out×in) and its optional base.bias.
func (w *Weights) LoadLinear(base string, out, in int) (*Linear, error) {
	wt, err := w.Linear(base, out, in)
	if err != nil {
		return nil, err
	}
	bias, err := w.OptionalVector(base+".bias", out)
	if err != nil {
		return nil, err
	}
	return &Linear{W: wt, Bias: bias}, nil
}

// MLP is a dense gated feed-forward block: down(act(gate·x) ⊙ up·x).
type MLP struct {
	Gate, Up, Down *Linear
	Act            kernels.Activation
	// Name prefixes the workspace buffers.
	Name string
}

// Forward writes the block's output for x into dst.
func (m *MLP) Forward(b kernels.Backend, ws *Workspace, dst, x kernels.Tensor) error {
	inter := m.Gate.W.Rows()
	g, err := ws.Get(m.Name+".gate", x.Rows, inter)
	if err != nil {
		return err
	}
	u, err := ws.Get(m.Name+".up", x.Rows, inter)
	if err != nil {
		return err
	}
	m.Gate.Forward(b, g, x)
	m.Up.Forward(b, u, x)
	b.Activate(g, g, u, m.Act)
	m.Down.Forward(b, dst, g)
	return nil
}

// LoadMLP binds prefix.{gate,up,down}_proj.
func (w *Weights) LoadMLP(prefix string, hidden, inter int, act kernels.Activation) (*MLP, error) {
	gate, err := w.LoadLinear(prefix+".gate_proj", inter, hidden)
	if err != nil {
		return nil, err
	}
	up, err := w.LoadLinear(prefix+".up_proj", inter, hidden)
	if err != nil {
		return nil, err
	}
	down, err := w.LoadLinear(prefix+".down_proj", hidden, inter)
	if err != nil {
		return nil, err
	}
	return &MLP{Gate: gate, Up: up, Down: down, Act: act, Name: "mlp"}, nil
}

// FinalHead turns a model's last hidden states into logits: the final
// RMSNorm, the output head and, when Softcap > 0, final logit softcapping.
type FinalHead struct {
	Norm kernels.Tensor
	Eps  float32
	// W is the head ([vocab, hidden]), the embedding when they are tied.
	W       kernels.Weight
	Softcap float32
}

// Logits runs the head on the rows of x (the hidden states of every row of
// step) whose logits the step wants. The logits live in ws's scratch until
// the next step, as Output allows.
func (h FinalHead) Logits(b kernels.Backend, ws *Workspace, step *Step, x kernels.Tensor) (*Output, error) {
	vocab := h.W.Rows()
	r := len(step.LogitRows)
	if r == 0 {
		return step.SplitLogits(nil, vocab), nil
	}
	sel, err := ws.Get("final.x", r, x.Cols)
	if err != nil {
		return nil, err
	}
	b.Gather(sel, x, step.LogitRows)
	b.RMSNorm(sel, sel, h.Norm, h.Eps, false)
	lg, err := ws.Get("final.logits", r, vocab)
	if err != nil {
		return nil, err
	}
	b.MatMul(lg, sel, h.W)
	if h.Softcap > 0 {
		b.Softcap(lg, lg, h.Softcap)
	}
	host := ws.Float32s("final.host", r*vocab)
	if err := b.Read(host, lg); err != nil {
		return nil, err
	}
	return step.SplitLogits(host, vocab), nil
}
