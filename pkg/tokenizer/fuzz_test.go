package tokenizer

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"golang.org/x/text/unicode/norm"
)

// roundTrip is what Decode(Encode(s)) must give for each fixture tokenizer: the text itself, after the
// repair of invalid UTF-8 and what the normalizer does that the decoder does not undo (Qwen: NFC of each
// piece between added tokens; Gemma: a literal "▁" comes back as a space).
func roundTrip(tok *Tokenizer, name, s string) string {
	s = validString(s)
	switch name {
	case "qwen3":
		var b strings.Builder
		for _, seg := range tok.rawAdded.split(s, nil) {
			if seg.id >= 0 {
				b.WriteString(seg.text)
			} else {
				b.WriteString(normalizeExact(norm.NFC, seg.text))
			}
		}
		return b.String()
	case "gemma3":
		return strings.ReplaceAll(s, "▁", " ")
	}
	return s
}

// FuzzEncodeDecode: for every fixture tokenizer, decoding the encoding gives the text back, the stream
// decoder agrees with Decode, nothing panics, and ids stay in range. Seeds: testdata/fuzz/FuzzEncodeDecode.
func FuzzEncodeDecode(f *testing.F) {
	for _, s := range []string{"", "Hello, world!", "<|im_start|>user\n😀\u0301<|im_end|>", "a\xffb\xe2\x82",
		"<start_of_turn>x<end_of_turn>▁▁ \t\n", "<｜User｜>中文123'S"} {
		f.Add(s)
	}
	toks := make([]*Tokenizer, len(fixtureSets))
	for i, name := range fixtureSets {
		toks[i] = fixture(f, name)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i, tok := range toks {
			ids := tok.Encode(s, false)
			for _, id := range ids {
				if id < 0 || int(id) >= tok.VocabSize() {
					t.Fatalf("%s: id %d out of range for %q", fixtureSets[i], id, s)
				}
			}
			got := tok.Decode(ids, false)
			if want := roundTrip(tok, fixtureSets[i], s); got != want {
				t.Fatalf("%s: round trip of %+q\n got  %+q\n want %+q\n ids %v", fixtureSets[i], s, got, want, ids)
			}
			d := tok.NewStreamDecoder(false)
			var b strings.Builder
			for _, id := range ids {
				b.WriteString(d.Add(id))
			}
			b.WriteString(d.Flush())
			if b.String() != got {
				t.Fatalf("%s: stream of %+q gave %+q, Decode %+q", fixtureSets[i], s, b.String(), got)
			}
			if with := tok.Encode(s, true); len(with) < len(ids) {
				t.Fatalf("%s: addSpecial dropped ids", fixtureSets[i])
			}
		}
	})
}

// FuzzDecode: arbitrary id sequences decode to valid UTF-8 without panicking, and the stream decoder's
// chunks are complete characters.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3}, uint8(0))
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0}, uint8(2))
	toks := make([]*Tokenizer, len(fixtureSets))
	for i, name := range fixtureSets {
		toks[i] = fixture(f, name)
	}
	f.Fuzz(func(t *testing.T, raw []byte, which uint8) {
		tok := toks[int(which)%len(toks)]
		ids := make([]int32, 0, len(raw)/3)
		for k := 0; k+2 < len(raw); k += 3 {
			// 24-bit little-endian ids cover the whole vocabulary and ids past it.
			ids = append(ids, int32(raw[k])|int32(raw[k+1])<<8|int32(raw[k+2])<<16)
		}
		for _, skip := range []bool{false, true} {
			s := tok.Decode(ids, skip)
			require.True(t, utf8.ValidString(s))
			d := tok.NewStreamDecoder(skip)
			for _, id := range ids {
				chunk := d.Add(id)
				require.True(t, utf8.ValidString(chunk))
				require.False(t, strings.HasSuffix(chunk, "\uFFFD"))
			}
			require.True(t, utf8.ValidString(d.Flush()))
		}
	})
}

// FuzzLoad: arbitrary bytes as tokenizer.json never panic; whatever loads also encodes and decodes.
// Seeds: small valid and broken files in testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	f.Add(tinyJSON(f, nil))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}`))
	f.Add([]byte(`{"model": {"vocab": {"a": 0}, "merges": [["a", "a"]]}, "decoder": {"type": "Fuse"}}`))
	f.Add([]byte(`{"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Prepend", "prepend": "_"}]},` +
		`"model": {"type": "BPE", "byte_fallback": true, "vocab": {"<0x41>": 0, "_": 1}, "merges": []}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := parseTokenizerJSON(data)
		if err != nil {
			return
		}
		for _, s := range []string{"", "ab a", "A\u0301 \xff", "<|end|>x"} {
			ids := tok.Encode(s, true)
			_ = tok.Decode(ids, false)
			_ = tok.Decode(ids, true)
		}
		_ = tok.Decode([]int32{-1, 0, 1, 1 << 30}, false)
	})
}

// FuzzSplit: every supported pattern covers its input exactly with non-empty pieces.
func FuzzSplit(f *testing.F) {
	f.Add("Hello world's 123 \n\n  x")
	f.Add("中文カナ\u0301\u200d😀 ++\r\n")
	classOnce.Do(classTableInit)
	f.Fuzz(func(t *testing.T, s string) {
		s = validString(s)
		for pat, m := range regexMatchers {
			for _, b := range []splitBehavior{behaviorIsolated, behaviorMergedWithPrevious, behaviorMergedWithNext, behaviorContiguous} {
				words := (&splitter{match: m, behavior: b}).appendWords(s, nil)
				if strings.Join(words, "") != s {
					t.Fatalf("pattern %q behavior %d does not cover %+q: %q", pat, b, s, words)
				}
				for _, w := range words {
					if w == "" {
						t.Fatalf("empty piece for %+q", s)
					}
				}
			}
		}
	})
}
