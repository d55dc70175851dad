package engine

import "github.com/maniac-ai/mach/pkg/sample"

// TextDecoder turns ids into text incrementally (tokenizer.StreamDecoder).
type TextDecoder interface {
	Add(id int32) string
	Flush() string
}

// OutputOptions configure an Output.
type OutputOptions struct {
	// EOS are the end-of-sequence ids (Engine.EOS).
	EOS map[int32]bool
	// Decoder makes the text; nil gives ids without text.
	Decoder TextDecoder
	// Stop strings end generation; the text stops before them.
	Stop []string
	// MaxTokens is the token budget (> 0).
	MaxTokens int
}

// Output is the per-token end of one generation, shared by Generate and
// the batch scheduler (pkg/scheduler) so both stop the same way: it decodes
// sampled ids into text, holds back what could still become a stop string,
// and ends at an end-of-sequence id, a stop string or the token budget.
type Output struct {
	opts   OutputOptions
	stops  *stopper
	tokens []int32
	text   []byte
	reason string
}

// NewOutput returns an Output for one sequence.
func NewOutput(o OutputOptions) *Output {
	return &Output{opts: o, stops: &stopper{stops: o.Stop}}
}

// Push records a sampled token. It returns the Token to stream (emit is
// false for an end-of-sequence id, which is neither streamed nor counted)
// and whether generation is over.
func (o *Output) Push(res sample.Result) (tok Token, emit, done bool) {
	if o.reason != "" {
		return Token{}, false, true
	}
	if o.opts.EOS[res.Token] {
		o.reason = FinishStop
		return Token{}, false, true
	}
	o.tokens = append(o.tokens, res.Token)
	var delta string
	if o.opts.Decoder != nil {
		delta = o.opts.Decoder.Add(res.Token)
	}
	shown, hit := o.stops.push(delta)
	o.text = append(o.text, shown...)
	tok = Token{ID: res.Token, Text: shown, Logprob: res.Logprob, Top: res.Top}
	switch {
	case hit:
		// The text after the stop string is dropped, held-back bytes too.
		o.reason, o.stops = FinishStop, nil
	case len(o.tokens) >= o.opts.MaxTokens:
		o.reason = FinishLength
	}
	return tok, true, o.reason != ""
}

// Finish ends the output and returns the text still held back (partial
// characters, a possible stop string that never completed). Call it once,
// after Push reported done or when generation ends early.
func (o *Output) Finish() string {
	if o.stops == nil {
		return ""
	}
	var tail string
	if o.opts.Decoder != nil {
		tail = o.opts.Decoder.Flush()
	}
	rest := o.stops.flush(tail)
	o.stops = nil
	o.text = append(o.text, rest...)
	return rest
}

// FinishReason is FinishStop or FinishLength once Push reported done ("" before).
func (o *Output) FinishReason() string { return o.reason }

// Tokens are the generated ids (an end-of-sequence id is not included).
func (o *Output) Tokens() []int32 { return o.tokens }

// Text is the text shown so far (all of it after Finish).
func (o *Output) Text() string { return string(o.text) }
