package gemma4

import (
	"math"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/model"
)

// perLayerInputs are Gemma 4's per-layer input embeddings (PLE, the
// E2B/E4B family): for every token a vector of P values per layer, the sum
// of a token-identity part (a row of embed_tokens_per_layer, scaled by √P
// in the table's type) and a context part (per_layer_model_projection of
// the scaled main embedding, times 1/√hidden, RMS-normed per layer over
// P), times 1/√2. Layer i adds
// post_per_layer_input_norm(per_layer_projection(gelu(per_layer_input_gate(h)) ⊙ input_i))
// to its output.
type perLayerInputs struct {
	embed      kernels.Weight // [PerLayerVocab, L·P]
	embedScale float32
	proj       *model.Linear // L·P × hidden
	norm       kernels.Tensor
	eps        float32
}

func (m *Model) bindPerLayerInputs() (*perLayerInputs, error) {
	o, w := m.opts, m.weights
	width := o.Layers * o.PerLayerInput
	p := &perLayerInputs{eps: o.Eps}
	var err error
	if p.embed, err = w.Linear(m.prefix+"embed_tokens_per_layer", o.PerLayerVocab, width); err != nil {
		return nil, err
	}
	p.embedScale = castScale(math.Sqrt(float64(o.PerLayerInput)), p.embed.Format())
	if p.proj, err = w.LoadLinear(m.prefix+"per_layer_model_projection", width, o.Hidden); err != nil {
		return nil, err
	}
	if p.norm, err = w.Vector(m.prefix+"per_layer_projection_norm.weight", o.PerLayerInput, 0); err != nil {
		return nil, err
	}
	return p, nil
}

// forward returns every row's per-layer inputs, [rows, L·P] (layer i's in
// columns [i·P, (i+1)·P)), from the step's tokens and their scaled
// embeddings x.
func (p *perLayerInputs) forward(b kernels.Backend, ws *model.Workspace, step *model.Step, x kernels.Tensor) (kernels.Tensor, error) {
	n := step.Rows
	width := p.proj.W.Rows()
	per := p.norm.Cols
	tok, err := ws.Get("ple.tok", n, width)
	if err != nil {
		return kernels.Tensor{}, err
	}
	ctx, err := ws.Get("ple.ctx", n, width)
	if err != nil {
		return kernels.Tensor{}, err
	}
	b.Embed(tok, p.embed, step.Tokens)
	b.Scale(tok, tok, p.embedScale)
	p.proj.Forward(b, ctx, x)
	b.Scale(ctx, ctx, float32(math.Pow(float64(x.Cols), -0.5)))
	layers := ctx.Reshape(n*width/per, per)
	b.RMSNorm(layers, layers, p.norm, p.eps, false)
	b.Add(ctx, ctx, tok)
	b.Scale(ctx, ctx, float32(math.Pow(2, -0.5)))
	return ctx, nil
}

// addGated adds layer i's per-layer input term to the residual stream x
// (y is scratch of x's shape).
func (p *perLayerInputs) addGated(b kernels.Backend, ws *model.Workspace, l *layer, i int, in, x, y kernels.Tensor) error {
	per := p.norm.Cols
	g, err := ws.Get("ple.gate", x.Rows, per)
	if err != nil {
		return err
	}
	l.pleGate.Forward(b, g, x)
	b.Activate(g, g, in.ColRange(i*per, (i+1)*per), kernels.Activation{Kind: kernels.GeLUTanh})
	l.pleProj.Forward(b, y, g)
	b.RMSNorm(y, y, l.plePostNorm, p.eps, false)
	b.Add(x, x, y)
	return nil
}
