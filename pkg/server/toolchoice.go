package server

import (
	"math"

	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/scheduler"
)

// Forced tool calls (tool_choice "required" or a named function): a
// scheduler constraint that masks every token whose text would leave the
// grammar of a call in the model's tool-call syntax (chat.ForceToolCall),
// and allows end-of-sequence only once the call is complete — or where
// the end-of-sequence token's own text completes it (harmony's <|call|>).
// The grammar works on the texts the request's decoder writes, so the
// vocabulary keeps the special tokens' texts exactly when the decoder
// does.

// toolConstraint is one request's forced-call constraint.
type toolConstraint struct {
	v *jsonVocab
	m *chat.CallMatcher
}

var _ scheduler.Constraint = (*toolConstraint)(nil)

func newToolConstraint(v *jsonVocab, g *chat.ForcedCall) *toolConstraint {
	return &toolConstraint{v: v, m: g.Start()}
}

// eosAllowed reports whether the end-of-sequence token id may come next.
func (c *toolConstraint) eosAllowed(id int) bool {
	if c.m.Done() {
		return true
	}
	t := c.v.text[id]
	return t != "" && c.m.Completes(t)
}

// Mask implements scheduler.Constraint.
func (c *toolConstraint) Mask(logits []float32) {
	ninf := float32(math.Inf(-1))
	for id := range logits {
		if id >= len(c.v.text) {
			logits[id] = ninf
			continue
		}
		if c.v.eos[int32(id)] {
			if !c.eosAllowed(id) {
				logits[id] = ninf
			}
			continue
		}
		t := c.v.text[id]
		if t == "" || !c.m.Allows(t) {
			logits[id] = ninf
		}
	}
}

// Accept implements scheduler.Constraint.
func (c *toolConstraint) Accept(id int32) {
	if int(id) >= len(c.v.text) || c.m.Done() {
		return
	}
	if c.v.eos[id] && !c.m.Completes(c.v.text[id]) {
		return
	}
	c.m.Feed(c.v.text[id])
}

// keepsSpecial reports whether the format's decoder writes special
// tokens' texts (see newDecoder).
func keepsSpecial(f chat.Format) bool {
	switch f {
	case chat.FormatHarmony, chat.FormatGemma4, chat.FormatDeepSeekDSML:
		return true
	}
	return false
}
