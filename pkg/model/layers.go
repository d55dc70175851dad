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
