package archconfig

import (
	"encoding/json"
	"fmt"
	"math"
)

// Rotary is a rotary embedding as the kernels apply it. Its fields are
// kernels.RoPE's, in the same order, so the model packages convert it with
// kernels.RoPE(r) while this package stays free of kernels.
type Rotary struct {
	// HeadDim is the size of one head.
	HeadDim int
	// Dims is how many dimensions rotate (≤ HeadDim), starting at Offset.
	Dims   int
	Offset int
	// Interleaved pairs (2j, 2j+1); otherwise half-split pairs.
	Interleaved bool
	// InvFreq holds Dims/2 inverse frequencies.
	InvFreq []float32
	// Scale multiplies cos and sin (0 means 1).
	Scale float32
	// Inverse rotates by the negative angle.
	Inverse bool
}

// RopeParams are the rotary settings of one attention layer.
type RopeParams struct {
	// Type is "default", "linear", "yarn" or "proportional".
	Type string
	// Theta is the base.
	Theta float64
	// Dims is the number of rotated dimensions (head_dim · partial factor).
	Dims int
	// Factor is the context extension factor (linear, yarn).
	Factor float64
	// OriginalMax is original_max_position_embeddings (yarn).
	OriginalMax int
	// BetaFast and BetaSlow bound YaRN's ramp (defaults 32 and 1).
	BetaFast, BetaSlow float64
	// Truncate rounds YaRN's correction range to whole dims (default true).
	Truncate bool
	// AttentionFactor overrides YaRN's cos/sin scale (0: 0.1·ln(factor)+1).
	AttentionFactor float64
	// RopeAngles is the number of non-zero frequencies of the proportional
	// variant (0: all).
	RopeAngles int
}

// InvFreq returns the Dims/2 inverse frequencies and the factor that
// multiplies cos and sin.
func (p RopeParams) InvFreq() ([]float32, float32, error) {
	if p.Dims <= 0 || p.Dims%2 != 0 {
		return nil, 0, fmt.Errorf("rope: %d rotary dims (want a positive even number)", p.Dims)
	}
	if p.Theta <= 0 {
		return nil, 0, fmt.Errorf("rope: theta %g", p.Theta)
	}
	half := p.Dims / 2
	base := make([]float64, half)
	for i := range base {
		// transformers: 1 / theta^(arange(0, dim, 2) / dim), in f32.
		e := float32(float32(2*i) / float32(p.Dims))
		base[i] = float64(float32(1 / math.Pow(p.Theta, float64(e))))
	}
	out := make([]float32, half)
	scale := float32(1)
	switch p.Type {
	case "", "default":
		for i, f := range base {
			out[i] = float32(f)
		}
	case "linear":
		if p.Factor <= 0 {
			return nil, 0, fmt.Errorf("rope: linear factor %g", p.Factor)
		}
		for i, f := range base {
			out[i] = float32(f / p.Factor)
		}
	case "proportional":
		n := half
		if p.RopeAngles > 0 && p.RopeAngles < half {
			n = p.RopeAngles
		}
		for i := range out {
			if i < n {
				out[i] = float32(base[i])
			}
		}
	case "yarn":
		if p.Factor <= 0 || p.OriginalMax <= 0 {
			return nil, 0, fmt.Errorf("rope: yarn needs factor (%g) and original_max_position_embeddings (%d)", p.Factor, p.OriginalMax)
		}
		fast, slow := p.BetaFast, p.BetaSlow
		if fast == 0 {
			fast = 32
		}
		if slow == 0 {
			slow = 1
		}
		dim := float64(p.Dims)
		corr := func(n float64) float64 {
			return dim * math.Log(float64(p.OriginalMax)/(n*2*math.Pi)) / (2 * math.Log(p.Theta))
		}
		low, high := corr(fast), corr(slow)
		if p.Truncate {
			low, high = math.Floor(low), math.Ceil(high)
		}
		low, high = math.Max(low, 0), math.Min(high, dim-1)
		if low == high {
			high += 0.001
		}
		for i, f := range base {
			ramp := math.Min(math.Max((float64(i)-low)/(high-low), 0), 1)
			extra := 1 - ramp
			out[i] = float32(f/p.Factor*(1-extra) + f*extra)
		}
		af := p.AttentionFactor
		if af == 0 {
			af = 0.1*math.Log(p.Factor) + 1
		}
		scale = float32(af)
	default:
		return nil, 0, fmt.Errorf("rope: type %q is not supported (default, linear, yarn and proportional are)", p.Type)
	}
	return out, scale, nil
}

// RopeFromConfig reads the rotary settings of a text config: rope_parameters
// (transformers 5) or rope_scaling plus rope_theta (older configs), with
// partial_rotary_factor. headDim is the attention head size.
func RopeFromConfig(text json.RawMessage, headDim int) (RopeParams, error) {
	var c struct {
		RopeTheta      *float64        `json:"rope_theta"`
		RopeParameters json.RawMessage `json:"rope_parameters"`
		RopeScaling    json.RawMessage `json:"rope_scaling"`
		Partial        *float64        `json:"partial_rotary_factor"`
	}
	if err := json.Unmarshal(text, &c); err != nil {
		return RopeParams{}, fmt.Errorf("rope: %w", err)
	}
	p := RopeParams{Type: "default", Theta: 10000, Dims: headDim, Truncate: true}
	if c.RopeTheta != nil {
		p.Theta = *c.RopeTheta
	}
	partial := 1.0
	if c.Partial != nil {
		partial = *c.Partial
	}
	for _, raw := range []json.RawMessage{c.RopeScaling, c.RopeParameters} {
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		var d RopeDict
		if err := json.Unmarshal(raw, &d); err != nil {
			return RopeParams{}, fmt.Errorf("rope: rope parameters: %w", err)
		}
		if k := d.Kind(); k != "" {
			p.Type = k
		}
		p, partial = d.Apply(p, partial, false)
	}
	p.Dims = int(float64(headDim) * partial)
	return p, nil
}

// RopeDict is one rope_parameters or rope_scaling object of a config.
type RopeDict struct {
	RopeType        string   `json:"rope_type"`
	Type            string   `json:"type"` // the older spelling
	Theta           *float64 `json:"rope_theta"`
	Factor          *float64 `json:"factor"`
	OriginalMax     *int     `json:"original_max_position_embeddings"`
	BetaFast        *float64 `json:"beta_fast"`
	BetaSlow        *float64 `json:"beta_slow"`
	Truncate        *bool    `json:"truncate"`
	AttentionFactor *float64 `json:"attention_factor"`
	Partial         *float64 `json:"partial_rotary_factor"`
}

// Kind is the variant d names: rope_type, else type ("" for neither).
func (d RopeDict) Kind() string {
	if d.RopeType != "" {
		return d.RopeType
	}
	return d.Type
}

// Apply sets on p every setting d has — the base too, unless keepTheta —
// and returns the partial rotary factor d gives (partial when none). The
// variant (Kind) is the caller's to check and set.
func (d RopeDict) Apply(p RopeParams, partial float64, keepTheta bool) (RopeParams, float64) {
	if d.Theta != nil && !keepTheta {
		p.Theta = *d.Theta
	}
	if d.Factor != nil {
		p.Factor = *d.Factor
	}
	if d.OriginalMax != nil {
		p.OriginalMax = *d.OriginalMax
	}
	if d.BetaFast != nil {
		p.BetaFast = *d.BetaFast
	}
	if d.BetaSlow != nil {
		p.BetaSlow = *d.BetaSlow
	}
	if d.Truncate != nil {
		p.Truncate = *d.Truncate
	}
	if d.AttentionFactor != nil {
		p.AttentionFactor = *d.AttentionFactor
	}
	if d.Partial != nil {
		partial = *d.Partial
	}
	return p, partial
}

// RopeRotary reads a text config's rotary settings (RopeFromConfig) for
// heads of headDim and returns them as the kernels rotate with them: the
// first Dims of each head, half-split.
func RopeRotary(text json.RawMessage, headDim int) (Rotary, error) {
	p, err := RopeFromConfig(text, headDim)
	if err != nil {
		return Rotary{}, err
	}
	inv, scale, err := p.InvFreq()
	if err != nil {
		return Rotary{}, err
	}
	return Rotary{HeadDim: headDim, Dims: p.Dims, InvFreq: inv, Scale: scale}, nil
}
