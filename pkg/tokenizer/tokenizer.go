// Package tokenizer loads Hugging Face tokenizer.json files and encodes and decodes text byte-exactly as
// the Hugging Face `tokenizers` library does, for the tokenizers the supported checkpoints ship: byte-level
// BPE with look-ahead split regexes (Qwen, gpt-oss, DeepSeek) and SentencePiece-style BPE with byte
// fallback (Gemma).
//
// Only the components those files use are implemented: normalizers NFC/NFD/NFKC/NFKD, Replace (literal),
// Prepend and Sequence; pre-tokenizers Split (the known regexes, or a literal), ByteLevel (as the last step,
// without its own regex) and Sequence; the BPE model; post-processors ByteLevel, TemplateProcessing and
// Sequence; decoders ByteLevel, Replace (literal), ByteFallback, Fuse and Sequence. Anything else is
// rejected by Load with an error naming the file and the type.
//
// Invalid UTF-8 passed to Encode is first repaired the way Python's bytes.decode("utf-8", "replace")
// does it (each maximal invalid subsequence becomes U+FFFD): that is the text a Python caller of HF
// tokenizers would have handed over.
//
// A Tokenizer is safe for concurrent use; a StreamDecoder is not.
package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// Tokenizer is a loaded tokenizer. Build one with Load.
type Tokenizer struct {
	model *bpe

	addedByID      map[int32]string // added token id -> content
	addedByContent map[string]int32
	special        map[string]bool // contents of special added tokens
	rawAdded       *addedMatcher   // tokens matched on the raw text (normalized: false)
	normAdded      *addedMatcher   // tokens matched on normalized text (normalized: true)

	normalizer normalizer // nil: none
	pre        preTokenizer
	template   []templatePiece // nil: add nothing when addSpecial is set
	decoder    decoder         // nil: tokens joined with spaces, as HF does without a decoder

	vocabSize int
	eos       []int32
	bos       int32
	hasBOS    bool
}

// templatePiece is one item of a TemplateProcessing "single" template: the input sequence (ids == nil)
// or a special token's ids.
type templatePiece struct {
	sequence bool
	ids      []int32
}

// Encode returns the ids of text. With addSpecial it adds what the tokenizer.json post-processor adds
// (Gemma: <bos> in front; Qwen, gpt-oss, DeepSeek: nothing). Special tokens written in the text are always
// recognised, as HF does.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int32 {
	text = validString(text)
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	ids := make([]int32, 0, len(text)/3+4)
	var segBuf [32]segment
	raw := t.rawAdded.split(text, segBuf[:0])
	var normBuf [16]segment
	for _, seg := range raw {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		piece := seg.text
		if t.normalizer != nil {
			piece = t.normalizer.normalize(piece)
		}
		for _, s2 := range t.normAdded.split(piece, normBuf[:0]) {
			if s2.id >= 0 {
				ids = append(ids, s2.id)
				continue
			}
			sc.words = t.pre.appendWords(s2.text, sc.words[:0])
			for _, w := range sc.words {
				ids = t.model.encodeWord(w, ids, sc)
			}
		}
	}
	if addSpecial && t.template != nil {
		out := make([]int32, 0, len(ids)+4)
		for _, p := range t.template {
			if p.sequence {
				out = append(out, ids...)
			} else {
				out = append(out, p.ids...)
			}
		}
		ids = out
	}
	return ids
}

// tokenString returns the string of id: the added token's content, else the model vocabulary entry.
func (t *Tokenizer) tokenString(id int32) (string, bool) {
	if s, ok := t.addedByID[id]; ok {
		return s, true
	}
	if id >= 0 && int(id) < len(t.model.idToToken) {
		if s := t.model.idToToken[id]; s != "" {
			return s, true
		}
	}
	return "", false
}

// Decode returns the text of ids. Ids that name no token (negative or out of range) are skipped, as HF
// skips ids it cannot map; with skipSpecial, special tokens are left out.
func (t *Tokenizer) Decode(ids []int32, skipSpecial bool) string {
	tokens := make([]string, 0, len(ids))
	for _, id := range ids {
		s, ok := t.tokenString(id)
		if !ok || (skipSpecial && t.special[s]) {
			continue
		}
		tokens = append(tokens, s)
	}
	if t.decoder == nil {
		return strings.Join(tokens, " ")
	}
	return strings.Join(t.decoder.decodeChain(tokens), "")
}

// VocabSize is one more than the largest id of the model vocabulary and the added tokens: the number of
// rows an embedding needs to cover every id this tokenizer produces.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// TokenID returns the id of a token string (an added token's content or a vocabulary entry, in the
// vocabulary's own alphabet, e.g. "Ġthe" for byte-level tokenizers).
func (t *Tokenizer) TokenID(token string) (int32, bool) {
	if id, ok := t.addedByContent[token]; ok {
		return id, true
	}
	return t.model.vocab.get(token)
}

// Token returns the token string of id.
func (t *Tokenizer) Token(id int32) (string, bool) { return t.tokenString(id) }

// EOS returns the end-of-sequence ids: generation_config.json's eos_token_id (a number or a list) when
// present, else the eos_token of tokenizer_config.json or special_tokens_map.json. Empty when none.
func (t *Tokenizer) EOS() []int32 { return append([]int32(nil), t.eos...) }

// BOS returns the beginning-of-sequence id from tokenizer_config.json's bos_token (else
// special_tokens_map.json, else generation_config.json's bos_token_id).
func (t *Tokenizer) BOS() (int32, bool) { return t.bos, t.hasBOS }

// IsSpecial reports whether id is a special added token (one that Decode drops with skipSpecial).
func (t *Tokenizer) IsSpecial(id int32) bool {
	s, ok := t.addedByID[id]
	return ok && t.special[s]
}

// StreamDecoder turns ids into text incrementally for streaming responses: Add returns only text that is
// complete UTF-8, holding back bytes of a character split across tokens (byte-level pieces or byte
// fallback), exactly like HF's DecodeStream. Flush returns what is held back at the end.
//
// The concatenation of every Add and the final Flush equals Decode of all the ids, with one exception
// that comes from HF's ByteFallback decoder: when ids end in the middle of a character that follows other
// byte-fallback characters of the same run, Decode turns the whole run into U+FFFD while the stream has
// already emitted the complete characters; Flush then returns the unfinished bytes as U+FFFD.
type StreamDecoder struct {
	t           *Tokenizer
	skipSpecial bool
	ids         []int32
	prefix      string
	prefixIndex int
	pending     int // ids added since the last emitted chunk
}

// NewStreamDecoder returns a decoder for one stream of ids.
func (t *Tokenizer) NewStreamDecoder(skipSpecial bool) *StreamDecoder {
	return &StreamDecoder{t: t, skipSpecial: skipSpecial}
}

// Add feeds one id and returns the text it completes, possibly "".
func (d *StreamDecoder) Add(id int32) string {
	if d.prefix == "" && len(d.ids) > 0 {
		if p := d.t.Decode(d.ids, d.skipSpecial); !endsWithReplacement(p) {
			d.prefix, d.prefixIndex = p, len(d.ids)
		}
	}
	d.ids = append(d.ids, id)
	d.pending++
	s := d.t.Decode(d.ids, d.skipSpecial)
	if len(s) <= len(d.prefix) || endsWithReplacement(s) || !strings.HasPrefix(s, d.prefix) {
		return ""
	}
	d.pending = 0
	out := s[len(d.prefix):]
	newIndex := len(d.ids) - d.prefixIndex
	d.ids = append(d.ids[:0], d.ids[d.prefixIndex:]...)
	d.prefix = d.t.Decode(d.ids, d.skipSpecial)
	d.prefixIndex = newIndex
	return out
}

// Flush returns the text held back (for instance a character whose last bytes never came, decoded with
// U+FFFD as Decode would) and resets the decoder.
func (d *StreamDecoder) Flush() string {
	s := d.t.Decode(d.ids, d.skipSpecial)
	out := ""
	switch {
	case len(s) > len(d.prefix) && strings.HasPrefix(s, d.prefix):
		out = s[len(d.prefix):]
	case d.pending > 0:
		// The held-back ids changed how the emitted ones decode (a byte-fallback run that ends inside a
		// character): emit the held-back ids on their own.
		out = d.t.Decode(d.ids[len(d.ids)-d.pending:], d.skipSpecial)
	}
	d.ids, d.prefix, d.prefixIndex, d.pending = d.ids[:0], "", 0, 0
	return out
}

func endsWithReplacement(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return r == utf8.RuneError && strings.HasSuffix(s, "\uFFFD")
}
