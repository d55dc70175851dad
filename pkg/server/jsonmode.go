package server

import (
	"math"
	"sync"

	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/scheduler"
)

// JSON mode (response_format json_object): a scheduler constraint that
// masks every token whose text would make the output stop being a prefix
// of one JSON object, and allows end-of-sequence only once the object is
// closed. The check is chat.JSONRecognizer, a byte-level JSON recognizer
// run from the current state over each token's text (see there why a
// token's lossy decoding is judged correctly).

// jsonVocab is what a constraint needs to know about every token.
type jsonVocab struct {
	text []string // decoded text; "" for empty tokens and, unless kept, special ones (never allowed)
	eos  map[int32]bool
}

// jsonConstraint is one request's JSON-mode constraint.
type jsonConstraint struct {
	v       *jsonVocab
	st      chat.JSONRecognizer
	scratch chat.JSONRecognizer
}

var _ scheduler.Constraint = (*jsonConstraint)(nil)

func newJSONConstraint(v *jsonVocab) *jsonConstraint {
	return &jsonConstraint{v: v}
}

// allows reports whether text may follow the current state.
func (j *jsonConstraint) allows(text string) bool {
	s := &j.scratch
	s.CopyFrom(&j.st)
	for i := range len(text) {
		if !s.Feed(text[i]) {
			return false
		}
	}
	return true
}

// Mask implements scheduler.Constraint.
func (j *jsonConstraint) Mask(logits []float32) {
	ninf := float32(math.Inf(-1))
	done := j.st.Done()
	for id := range logits {
		if id >= len(j.v.text) {
			logits[id] = ninf
			continue
		}
		if j.v.eos[int32(id)] {
			if !done {
				logits[id] = ninf
			}
			continue
		}
		t := j.v.text[id]
		if t == "" || !j.allows(t) {
			logits[id] = ninf
		}
	}
}

// Accept implements scheduler.Constraint.
func (j *jsonConstraint) Accept(id int32) {
	if int(id) >= len(j.v.text) || j.v.eos[id] {
		return
	}
	for _, c := range []byte(j.v.text[id]) {
		j.st.Feed(c)
	}
}

// jsonVocabulary returns the token texts JSON mode checks: special
// tokens are never allowed.
func (s *Server) jsonVocabulary() (*jsonVocab, error) { return s.vocabulary(false) }

// vocabulary builds (once per kind) every token's decoded text;
// keepSpecial includes the special tokens' texts, as a decoder that keeps
// them writes them (harmony, Gemma 4, DSML; see newDecoder), else they
// are "" and never allowed.
func (s *Server) vocabulary(keepSpecial bool) (*jsonVocab, error) {
	k := 0
	if keepSpecial {
		k = 1
	}
	st := &s.vocabs[k]
	st.once.Do(func() {
		tok, err := s.model.Prompter.Tokenizer()
		if err != nil {
			st.err = err
			return
		}
		vocab := s.sched.Vocab()
		v := &jsonVocab{text: make([]string, vocab), eos: s.sched.Options().EOS}
		for id := range vocab {
			if !keepSpecial && tok.IsSpecial(int32(id)) {
				continue
			}
			v.text[id] = tok.Decode([]int32{int32(id)}, false)
		}
		st.vocab = v
	})
	return st.vocab, st.err
}

// jsonModeState holds the server's lazily built vocabularies: [0]
// without special tokens' texts, [1] with them.
type jsonModeState struct {
	vocabs [2]struct {
		once  sync.Once
		vocab *jsonVocab
		err   error
	}
}
