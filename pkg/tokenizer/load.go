package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/maniac-ai/mach/pkg/fault"
)

// File names Load reads from a checkpoint or tokenizer directory.
const (
	FileTokenizer        = "tokenizer.json"
	FileTokenizerConfig  = "tokenizer_config.json"
	FileSpecialTokensMap = "special_tokens_map.json"
	FileGenerationConfig = "generation_config.json"
)

// maxTokenID bounds ids read from files before anything is sized by them (the largest real vocabularies
// are around 260k).
const maxTokenID = 1 << 24

// ErrFormat is wrapped by every error about a malformed tokenizer file.
var ErrFormat = errors.New("invalid tokenizer file")

// Load reads dir/tokenizer.json, plus tokenizer_config.json, special_tokens_map.json and
// generation_config.json when present (for EOS and BOS). Errors name the file; unsupported components are
// classified fault.ErrUnsupported, unreadable or malformed files fault.ErrIO.
func Load(dir string) (*Tokenizer, error) {
	path := filepath.Join(dir, FileTokenizer)
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fault.Mark(fmt.Errorf("%s: not found: the directory must hold a Hugging Face tokenizer.json", path), fault.ErrIO)
		}
		return nil, fault.Mark(fmt.Errorf("read tokenizer: %w", err), fault.ErrIO)
	}
	t, err := parseTokenizerJSON(data)
	if err != nil {
		return nil, fileError(path, err)
	}
	if err := t.loadSpecialConfig(dir); err != nil {
		return nil, err
	}
	return t, nil
}

// unsupportedError is a component this package does not implement.
type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string { return e.msg }

func unsupported(format string, args ...any) error {
	return &unsupportedError{fmt.Sprintf(format, args...)}
}

// fileError prefixes err with the file and classifies it.
func fileError(path string, err error) error {
	var u *unsupportedError
	if errors.As(err, &u) {
		return fault.Mark(fmt.Errorf("%s: %w", path, err), fault.ErrUnsupported)
	}
	return fault.Mark(fmt.Errorf("%s: %w: %w", path, ErrFormat, err), fault.ErrIO)
}

// parseTokenizerJSON builds a Tokenizer from the bytes of a tokenizer.json.
func parseTokenizerJSON(data []byte) (*Tokenizer, error) {
	classOnce.Do(classTableInit)
	if !utf8.Valid(data) {
		return nil, errors.New("not valid UTF-8")
	}
	var (
		raw   = map[string][]byte{}
		model *bpe
	)
	sc := &jsonScanner{data: data}
	err := sc.object(func(key string) error {
		if key == "model" {
			m, err := parseModel(sc)
			if err != nil {
				var u *unsupportedError
				if errors.As(err, &u) {
					return err // already names the model type
				}
				return fmt.Errorf("model: %w", err)
			}
			model = m
			return nil
		}
		v, err := sc.skipValue()
		raw[key] = v
		return err
	})
	if err != nil {
		return nil, err
	}
	if sc.peek() != 0 {
		return nil, sc.fail("data after the top-level object")
	}
	if model == nil {
		return nil, errors.New(`no "model"`)
	}
	for _, k := range []string{"truncation", "padding"} {
		if v, ok := raw[k]; ok && string(v) != "null" {
			return nil, unsupported("%s is set; encoding with %s is not supported", k, k)
		}
	}

	t := &Tokenizer{
		model:          model,
		addedByID:      map[int32]string{},
		addedByContent: map[string]int32{},
		special:        map[string]bool{},
		bos:            -1,
	}
	var added []addedToken
	if v, ok := raw["added_tokens"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &added); err != nil {
			return nil, fmt.Errorf("added_tokens: %w", err)
		}
	}
	var rawTokens, normTokens []addedToken
	for k, a := range added {
		if a.ID < 0 || a.ID > maxTokenID {
			return nil, fmt.Errorf("added_tokens[%d]: id %d out of range [0, %d]", k, a.ID, maxTokenID)
		}
		if a.Content == "" {
			continue
		}
		t.addedByID[a.ID] = a.Content
		t.addedByContent[a.Content] = a.ID
		if a.Special {
			t.special[a.Content] = true
		}
		if a.Normalized {
			normTokens = append(normTokens, a)
		} else {
			rawTokens = append(rawTokens, a)
		}
	}

	if t.normalizer, err = parseNormalizer(raw["normalizer"]); err != nil {
		return nil, err
	}
	// Normalized added tokens are matched in their normalized form, as HF builds its automaton.
	for k := range normTokens {
		if t.normalizer != nil {
			normTokens[k].Content = t.normalizer.normalize(normTokens[k].Content)
		}
	}
	t.rawAdded = newAddedMatcher(rawTokens)
	t.normAdded = newAddedMatcher(normTokens)

	pre, byteLevel, err := parsePreTokenizer(raw["pre_tokenizer"])
	if err != nil {
		return nil, err
	}
	t.pre = pre
	model.setByteLevel(byteLevel)

	if t.template, err = parsePostProcessor(raw["post_processor"], t); err != nil {
		return nil, err
	}
	if t.decoder, err = parseDecoder(raw["decoder"]); err != nil {
		return nil, err
	}

	t.vocabSize = len(model.idToToken)
	for id := range t.addedByID {
		t.vocabSize = max(t.vocabSize, int(id)+1)
	}
	return t, nil
}

// typed reads the "type" field of a component.
func typed(v []byte) (string, error) {
	var h struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(v, &h); err != nil {
		return "", err
	}
	return h.Type, nil
}

func isNull(v []byte) bool { return len(v) == 0 || string(bytes.TrimSpace(v)) == "null" }

// pattern is a Split/Replace pattern: {"String": "..."} or {"Regex": "..."}.
type pattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

func parseNormalizer(v []byte) (normalizer, error) {
	if isNull(v) {
		return nil, nil
	}
	typ, err := typed(v)
	if err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	switch typ {
	case "NFC":
		return unicodeNorm{norm.NFC}, nil
	case "NFD":
		return unicodeNorm{norm.NFD}, nil
	case "NFKC":
		return unicodeNorm{norm.NFKC}, nil
	case "NFKD":
		return unicodeNorm{norm.NFKD}, nil
	case "Sequence":
		var s struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("normalizer Sequence: %w", err)
		}
		var q normSequence
		for _, item := range s.Normalizers {
			n, err := parseNormalizer(item)
			if err != nil {
				return nil, err
			}
			if n != nil {
				q = append(q, n)
			}
		}
		if len(q) == 0 {
			return nil, nil
		}
		return q, nil
	case "Replace":
		var r struct {
			Pattern pattern `json:"pattern"`
			Content string  `json:"content"`
		}
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("normalizer Replace: %w", err)
		}
		if r.Pattern.String == nil {
			return nil, unsupported("normalizer Replace with a regex pattern is not supported (only literal strings)")
		}
		return replace{*r.Pattern.String, r.Content}, nil
	case "Prepend":
		var p struct {
			Prepend string `json:"prepend"`
		}
		if err := json.Unmarshal(v, &p); err != nil {
			return nil, fmt.Errorf("normalizer Prepend: %w", err)
		}
		return prepend{p.Prepend}, nil
	case "":
		return nil, errors.New(`normalizer: missing "type"`)
	}
	return nil, unsupported("normalizer type %q is not supported", typ)
}

// parsePreTokenizer returns the splitting pipeline and whether it ends with ByteLevel (words are then
// byte-level encoded by the model).
func parsePreTokenizer(v []byte) (preTokenizer, bool, error) {
	if isNull(v) {
		return noSplit{}, false, nil
	}
	typ, err := typed(v)
	if err != nil {
		return nil, false, fmt.Errorf("pre_tokenizer: %w", err)
	}
	var items []json.RawMessage
	if typ == "Sequence" {
		var s struct {
			Pretokenizers []json.RawMessage `json:"pretokenizers"`
		}
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, false, fmt.Errorf("pre_tokenizer Sequence: %w", err)
		}
		items = s.Pretokenizers
	} else {
		items = []json.RawMessage{v}
	}
	var q sequence
	byteLevel := false
	for k, item := range items {
		typ, err := typed(item)
		if err != nil {
			return nil, false, fmt.Errorf("pre_tokenizer: %w", err)
		}
		switch typ {
		case "Split":
			sp, err := parseSplit(item)
			if err != nil {
				return nil, false, err
			}
			q = append(q, sp)
		case "ByteLevel":
			var b struct {
				AddPrefixSpace bool  `json:"add_prefix_space"`
				UseRegex       *bool `json:"use_regex"`
			}
			if err := json.Unmarshal(item, &b); err != nil {
				return nil, false, fmt.Errorf("pre_tokenizer ByteLevel: %w", err)
			}
			if k != len(items)-1 {
				return nil, false, unsupported("pre_tokenizer ByteLevel before other pre-tokenizers is not supported (only as the last step)")
			}
			if b.AddPrefixSpace {
				return nil, false, unsupported("pre_tokenizer ByteLevel with add_prefix_space=true is not supported")
			}
			if b.UseRegex == nil || *b.UseRegex {
				return nil, false, unsupported("pre_tokenizer ByteLevel with use_regex=true (the GPT-2 split) is not supported")
			}
			byteLevel = true
		case "Sequence":
			return nil, false, unsupported("nested pre_tokenizer Sequence is not supported")
		case "":
			return nil, false, errors.New(`pre_tokenizer: missing "type"`)
		default:
			return nil, false, unsupported("pre_tokenizer type %q is not supported", typ)
		}
	}
	switch len(q) {
	case 0:
		return noSplit{}, byteLevel, nil
	case 1:
		return q[0], byteLevel, nil
	}
	return q, byteLevel, nil
}

func parseSplit(v []byte) (*splitter, error) {
	var s struct {
		Pattern  pattern `json:"pattern"`
		Behavior string  `json:"behavior"`
		Invert   bool    `json:"invert"`
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, fmt.Errorf("pre_tokenizer Split: %w", err)
	}
	b, ok := splitBehaviors[s.Behavior]
	if !ok {
		return nil, unsupported("pre_tokenizer Split behavior %q is not supported", s.Behavior)
	}
	sp := &splitter{behavior: b, invert: s.Invert}
	switch {
	case s.Pattern.Regex != nil:
		m, ok := regexMatchers[*s.Pattern.Regex]
		if !ok {
			return nil, unsupported("pre_tokenizer Split regex %q is not supported (known: Qwen, cl100k, o200k, DeepSeek-V3)", *s.Pattern.Regex)
		}
		sp.match = m
	case s.Pattern.String != nil:
		sp.literal = *s.Pattern.String
	default:
		return nil, errors.New(`pre_tokenizer Split: pattern has neither "String" nor "Regex"`)
	}
	return sp, nil
}

func parsePostProcessor(v []byte, t *Tokenizer) ([]templatePiece, error) {
	if isNull(v) {
		return nil, nil
	}
	typ, err := typed(v)
	if err != nil {
		return nil, fmt.Errorf("post_processor: %w", err)
	}
	switch typ {
	case "ByteLevel":
		return nil, nil // offsets only
	case "TemplateProcessing":
		return parseTemplate(v)
	case "Sequence":
		var s struct {
			Processors []json.RawMessage `json:"processors"`
		}
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("post_processor Sequence: %w", err)
		}
		var tmpl []templatePiece
		for _, p := range s.Processors {
			pt, err := parsePostProcessor(p, t)
			if err != nil {
				return nil, err
			}
			if pt != nil {
				if tmpl != nil {
					return nil, unsupported("post_processor Sequence with two templates is not supported")
				}
				tmpl = pt
			}
		}
		return tmpl, nil
	case "":
		return nil, errors.New(`post_processor: missing "type"`)
	}
	return nil, unsupported("post_processor type %q is not supported", typ)
}

func parseTemplate(v []byte) ([]templatePiece, error) {
	var tp struct {
		Single []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
			Sequence *struct {
				ID string `json:"id"`
			} `json:"Sequence"`
		} `json:"single"`
		SpecialTokens map[string]struct {
			IDs []int64 `json:"ids"`
		} `json:"special_tokens"`
	}
	if err := json.Unmarshal(v, &tp); err != nil {
		return nil, fmt.Errorf("post_processor TemplateProcessing: %w", err)
	}
	out := []templatePiece{}
	for k, p := range tp.Single {
		switch {
		case p.Sequence != nil:
			if p.Sequence.ID != "A" {
				return nil, fmt.Errorf("post_processor TemplateProcessing: single[%d] names sequence %q, want \"A\"", k, p.Sequence.ID)
			}
			out = append(out, templatePiece{sequence: true})
		case p.SpecialToken != nil:
			st, ok := tp.SpecialTokens[p.SpecialToken.ID]
			if !ok {
				return nil, fmt.Errorf("post_processor TemplateProcessing: special token %q is not in special_tokens", p.SpecialToken.ID)
			}
			ids := make([]int32, len(st.IDs))
			for j, id := range st.IDs {
				if id < 0 || id > maxTokenID {
					return nil, fmt.Errorf("post_processor TemplateProcessing: id %d out of range", id)
				}
				ids[j] = int32(id)
			}
			out = append(out, templatePiece{ids: ids})
		default:
			return nil, fmt.Errorf("post_processor TemplateProcessing: single[%d] is neither SpecialToken nor Sequence", k)
		}
	}
	return out, nil
}

func parseDecoder(v []byte) (decoder, error) {
	if isNull(v) {
		return nil, nil
	}
	typ, err := typed(v)
	if err != nil {
		return nil, fmt.Errorf("decoder: %w", err)
	}
	switch typ {
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Replace":
		var r struct {
			Pattern pattern `json:"pattern"`
			Content string  `json:"content"`
		}
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("decoder Replace: %w", err)
		}
		if r.Pattern.String == nil {
			return nil, unsupported("decoder Replace with a regex pattern is not supported (only literal strings)")
		}
		return replaceDecoder{*r.Pattern.String, r.Content}, nil
	case "Sequence":
		var s struct {
			Decoders []json.RawMessage `json:"decoders"`
		}
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("decoder Sequence: %w", err)
		}
		var q decoderSequence
		for _, item := range s.Decoders {
			d, err := parseDecoder(item)
			if err != nil {
				return nil, err
			}
			if d != nil {
				q = append(q, d)
			}
		}
		return q, nil
	case "":
		return nil, errors.New(`decoder: missing "type"`)
	}
	return nil, unsupported("decoder type %q is not supported", typ)
}

// parseModel reads the "model" object; the scanner is at its value.
func parseModel(sc *jsonScanner) (*bpe, error) {
	m := &bpe{unkID: -1}
	var (
		typ          string
		mergesSeen   bool
		otherVocab   bool
		pending      [][2]string // merges read before the vocabulary, resolved at the end
		unk          *string
		contPrefix   *string
		endSuffix    *string
		dropout      *float64
		byteFallback bool
		fuseUnk      bool
		ignore       bool
	)
	err := sc.object(func(key string) error {
		var err error
		switch key {
		case "type":
			typ, err = sc.readString()
		case "vocab":
			if m.vocab != nil {
				return errors.New("repeated key")
			}
			if (typ != "" && typ != "BPE") || sc.peek() != '{' {
				// Another model's vocabulary (Unigram's is a list): reported below by type.
				_, err = sc.skipValue()
				otherVocab = true
				break
			}
			m.vocab, err = parseVocab(sc)
		case "merges":
			if mergesSeen {
				return errors.New("repeated key")
			}
			mergesSeen = true
			if (typ != "" && typ != "BPE") || sc.peek() != '[' {
				_, err = sc.skipValue()
				break
			}
			pending, err = parseMerges(sc, m)
		default:
			var v []byte
			if v, err = sc.skipValue(); err != nil {
				return err
			}
			switch key {
			case "unk_token":
				err = json.Unmarshal(v, &unk)
			case "continuing_subword_prefix":
				err = json.Unmarshal(v, &contPrefix)
			case "end_of_word_suffix":
				err = json.Unmarshal(v, &endSuffix)
			case "dropout":
				err = json.Unmarshal(v, &dropout)
			case "byte_fallback":
				err = json.Unmarshal(v, &byteFallback)
			case "fuse_unk":
				err = json.Unmarshal(v, &fuseUnk)
			case "ignore_merges":
				err = json.Unmarshal(v, &ignore)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if typ == "" && mergesSeen {
		typ = "BPE" // files written before the type tag
	}
	if typ != "BPE" {
		return nil, unsupported("model type %q is not supported (only BPE)", typ)
	}
	if otherVocab {
		return nil, errors.New(`BPE model: "vocab" is not an object`)
	}
	if m.vocab == nil || !mergesSeen {
		return nil, errors.New("BPE model without vocab or merges")
	}
	if dropout != nil && *dropout != 0 {
		return nil, unsupported("BPE dropout %v is not supported", *dropout)
	}
	if contPrefix != nil && *contPrefix != "" {
		return nil, unsupported("BPE continuing_subword_prefix %q is not supported", *contPrefix)
	}
	if endSuffix != nil && *endSuffix != "" {
		return nil, unsupported("BPE end_of_word_suffix %q is not supported", *endSuffix)
	}
	if m.merges == nil {
		m.merges = newPairTable(len(pending))
		var buf []byte
		for k, p := range pending {
			if buf, err = m.addMerge([]byte(p[0]), []byte(p[1]), k, buf); err != nil {
				return nil, err
			}
		}
	}
	m.idToToken = m.vocab.idStrings()
	m.byteFallback, m.fuseUnk, m.ignoreMerges = byteFallback, fuseUnk, ignore
	if unk != nil {
		id, ok := m.vocab.get(*unk)
		if !ok {
			return nil, fmt.Errorf("unk_token %q is not in the vocabulary", *unk)
		}
		m.unkID = id
	}
	for b := 0; b < 256; b++ {
		m.byteFallbackIDs[b] = -1
		if id, ok := m.vocab.get(fmt.Sprintf("<0x%02X>", b)); ok {
			m.byteFallbackIDs[b] = id
		}
	}
	return m, nil
}

// parseVocab reads {"token": id, ...}.
func parseVocab(sc *jsonScanner) (*strTable, error) {
	t := newStrTable(1 << 17)
	var key []byte
	err := sc.object2(func() error {
		var err error
		if key, err = sc.appendString(key[:0]); err != nil {
			return err
		}
		if err := sc.expect(':'); err != nil {
			return err
		}
		id, err := sc.readUint(maxTokenID)
		if err != nil {
			return fmt.Errorf("vocab %q: %w", key, err)
		}
		t.put(key, int32(id))
		return nil
	})
	return t, err
}

// addMerge records merge number rank of tokens a and b.
func (m *bpe) addMerge(a, b []byte, rank int, buf []byte) ([]byte, error) {
	ida, ok1 := m.vocab.getBytes(a)
	idb, ok2 := m.vocab.getBytes(b)
	if !ok1 || !ok2 {
		return buf, fmt.Errorf("merges[%d] %q %q: token not in the vocabulary", rank, a, b)
	}
	buf = append(append(buf[:0], a...), b...)
	n, ok := m.vocab.getBytes(buf)
	if !ok {
		return buf, fmt.Errorf("merges[%d] %q %q: merged token not in the vocabulary", rank, a, b)
	}
	m.merges.put(ida, idb, uint32(rank), n)
	return buf, nil
}

// parseMerges reads merges in either form, ["a b", ...] or [["a", "b"], ...]. When the vocabulary is
// already known (the usual key order) they go straight into m.merges; otherwise they are returned.
func parseMerges(sc *jsonScanner, m *bpe) ([][2]string, error) {
	var pending [][2]string
	if m.vocab != nil {
		m.merges = newPairTable(1 << 17)
	}
	var a, b, tmp []byte
	err := sc.array(func(i int) error {
		var err error
		switch sc.peek() {
		case '"':
			if a, err = sc.appendString(a[:0]); err != nil {
				return err
			}
			sp := bytes.IndexByte(a, ' ')
			if sp < 0 || bytes.IndexByte(a[sp+1:], ' ') >= 0 {
				return fmt.Errorf("merges[%d] %q: want two tokens separated by one space", i, a)
			}
			b = append(b[:0], a[sp+1:]...)
			a = a[:sp]
		case '[':
			n := 0
			err = sc.array(func(j int) error {
				var err error
				switch j {
				case 0:
					a, err = sc.appendString(a[:0])
				case 1:
					b, err = sc.appendString(b[:0])
				default:
					_, err = sc.appendString(tmp[:0])
				}
				n++
				return err
			})
			if err != nil {
				return err
			}
			if n != 2 {
				return fmt.Errorf("merges[%d]: want a pair of tokens, got %d", i, n)
			}
		default:
			return sc.fail("merges[%d]: want a string or a pair", i)
		}
		if m.merges == nil {
			pending = append(pending, [2]string{string(a), string(b)})
			return nil
		}
		tmp, err = m.addMerge(a, b, i, tmp)
		return err
	})
	return pending, err
}

// setByteLevel switches the model to byte-level input and builds the byte tables.
func (m *bpe) setByteLevel(on bool) {
	m.byteLevel = on
	if !on {
		return
	}
	for b := 0; b < 256; b++ {
		m.byteIDs[b] = -1
		if id, ok := m.vocab.get(byteToStr[b]); ok {
			m.byteIDs[b] = id
		}
	}
}

// tokenRef is a special token named in tokenizer_config.json or special_tokens_map.json.
type tokenRef struct{ content string }

// UnmarshalJSON accepts a token written as a string or as {"content": ...} (AddedToken); null is empty.
func (r *tokenRef) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &r.content)
	}
	var obj struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return err
	}
	r.content = obj.Content
	return nil
}

// idList accepts a number or a list of numbers.
type idList []int64

func (l *idList) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		var xs []int64
		if err := json.Unmarshal(b, &xs); err != nil {
			return err
		}
		*l = xs
		return nil
	}
	var x int64
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	*l = idList{x}
	return nil
}

// loadSpecialConfig sets EOS and BOS from the optional files next to tokenizer.json.
func (t *Tokenizer) loadSpecialConfig(dir string) error {
	var tc, sm struct {
		EOS tokenRef `json:"eos_token"`
		BOS tokenRef `json:"bos_token"`
	}
	var gc struct {
		EOS idList `json:"eos_token_id"`
		BOS idList `json:"bos_token_id"`
	}
	read := func(name string, v any) (bool, error) {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fault.Mark(fmt.Errorf("read %s: %w", path, err), fault.ErrIO)
		}
		if err := json.Unmarshal(data, v); err != nil {
			return false, fault.Mark(fmt.Errorf("%s: %w: %w", path, ErrFormat, err), fault.ErrIO)
		}
		return true, nil
	}
	if _, err := read(FileTokenizerConfig, &tc); err != nil {
		return err
	}
	if _, err := read(FileSpecialTokensMap, &sm); err != nil {
		return err
	}
	hasGC, err := read(FileGenerationConfig, &gc)
	if err != nil {
		return err
	}
	lookup := func(file, field, tok string) (int32, error) {
		id, ok := t.TokenID(tok)
		if !ok {
			return 0, fault.Mark(fmt.Errorf("%s: %s %q is not a token of tokenizer.json", filepath.Join(dir, file), field, tok), fault.ErrIO)
		}
		return id, nil
	}
	checkID := func(field string, id int64) (int32, error) {
		if id < 0 || id > math.MaxInt32 {
			return 0, fault.Mark(fmt.Errorf("%s: %s %d out of range", filepath.Join(dir, FileGenerationConfig), field, id), fault.ErrIO)
		}
		return int32(id), nil
	}

	switch {
	case hasGC && len(gc.EOS) > 0:
		for _, id := range gc.EOS {
			v, err := checkID("eos_token_id", id)
			if err != nil {
				return err
			}
			t.eos = append(t.eos, v)
		}
	case tc.EOS.content != "":
		id, err := lookup(FileTokenizerConfig, "eos_token", tc.EOS.content)
		if err != nil {
			return err
		}
		t.eos = []int32{id}
	case sm.EOS.content != "":
		id, err := lookup(FileSpecialTokensMap, "eos_token", sm.EOS.content)
		if err != nil {
			return err
		}
		t.eos = []int32{id}
	}

	switch {
	case tc.BOS.content != "":
		id, err := lookup(FileTokenizerConfig, "bos_token", tc.BOS.content)
		if err != nil {
			return err
		}
		t.bos, t.hasBOS = id, true
	case sm.BOS.content != "":
		id, err := lookup(FileSpecialTokensMap, "bos_token", sm.BOS.content)
		if err != nil {
			return err
		}
		t.bos, t.hasBOS = id, true
	case hasGC && len(gc.BOS) > 0:
		id, err := checkID("bos_token_id", gc.BOS[0])
		if err != nil {
			return err
		}
		t.bos, t.hasBOS = id, true
	}
	return nil
}
