package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// expectedLine is one line of testdata/tokenizers/<name>.expected.jsonl, written by
// tools/refgen/tokenizers.py with Hugging Face tokenizers.
type expectedLine struct {
	Meta *struct {
		Tokenizer         string `json:"tokenizer"`
		TokenizersVersion string `json:"tokenizers_version"`
		TokenizerSHA256   string `json:"tokenizer_json_sha256"`
		CorpusSHA256      string `json:"corpus_sha256"`
	} `json:"meta"`

	ID            *int     `json:"id"`
	Text          string   `json:"text"`
	IDs           []int32  `json:"ids"`
	IDsSpecial    []int32  `json:"ids_special"`
	Decode        keepSkip `json:"decode"`
	DecodeSpecial keepSkip `json:"decode_special"`
	Stream        *struct {
		Keep []*string `json:"keep"`
		Skip []*string `json:"skip"`
	} `json:"stream"`

	DecodeCase *int   `json:"decode_case"`
	Keep       string `json:"keep"`
	Skip       string `json:"skip"`
	Error      string `json:"error"`
}

type keepSkip struct {
	Keep string `json:"keep"`
	Skip string `json:"skip"`
}

// expectedDir is where the reference files live; MACH_TOKENIZER_EXPECTED_DIR points elsewhere when
// checking freshly generated files before committing them.
func expectedDir() string {
	if d := os.Getenv("MACH_TOKENIZER_EXPECTED_DIR"); d != "" {
		return d
	}
	return refDir
}

// mismatches collects differences and reports the first few, so one systematic bug does not print
// thousands of lines.
type mismatches struct {
	n     int
	first []string
}

func (m *mismatches) add(format string, args ...any) {
	m.n++
	if len(m.first) < 15 {
		m.first = append(m.first, fmt.Sprintf(format, args...))
	}
}

func (m *mismatches) check(t *testing.T, what string, total int) {
	t.Helper()
	if m.n > 0 {
		t.Errorf("%s: %d of %d checks differ from Hugging Face tokenizers; first ones:\n%s", what, m.n, total,
			strings.Join(m.first, "\n"))
	}
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestParityWithHF compares Encode, Decode and the stream decoder with Hugging Face tokenizers on the whole
// corpus for every fixture tokenizer.
func TestParityWithHF(t *testing.T) {
	corpus := readCorpus(t)
	corpusSHA := fileSHA256(t, corpusPath)
	for _, name := range fixtureSets {
		t.Run(name, func(t *testing.T) {
			tok := fixture(t, name)
			path := filepath.Join(expectedDir(), name+".expected.jsonl")
			_, err := os.Stat(path)
			require.NoError(t, err, "%s is missing: generate it with tools/refgen/tokenizers.py (see README, Tokenizer)", path)

			var enc, dec, stream, cases mismatches
			nEnc, nDec, nStream, nCases := 0, 0, 0, 0
			seen := map[int]bool{}
			forEachLine(t, path, func(line []byte) {
				var e expectedLine
				require.NoError(t, json.Unmarshal(line, &e))
				switch {
				case e.Meta != nil:
					require.Equal(t, corpusSHA, e.Meta.CorpusSHA256, "%s was generated from another corpus: regenerate it", path)
					require.Equal(t, fileSHA256(t, filepath.Join(cacheDir, name, FileTokenizer)), e.Meta.TokenizerSHA256,
						"%s was generated from another tokenizer.json: regenerate it", path)
				case e.ID != nil:
					id := *e.ID
					require.Less(t, id, len(corpus), "expected line for unknown corpus id %d", id)
					require.Equal(t, corpus[id].Text, e.Text, "corpus line %d changed: regenerate %s", id, path)
					seen[id] = true
					nEnc += 2
					if got := tok.Encode(e.Text, false); !equalIDs(got, e.IDs) {
						enc.add("  #%d %q\n    got  %v\n    want %v", id, short(e.Text), got, e.IDs)
					}
					if got := tok.Encode(e.Text, true); !equalIDs(got, e.IDsSpecial) {
						enc.add("  #%d %q (addSpecial)\n    got  %v\n    want %v", id, short(e.Text), got, e.IDsSpecial)
					}
					for _, c := range []struct {
						ids  []int32
						skip bool
						want string
						what string
					}{
						{e.IDs, false, e.Decode.Keep, "ids keep"},
						{e.IDs, true, e.Decode.Skip, "ids skip"},
						{e.IDsSpecial, false, e.DecodeSpecial.Keep, "ids_special keep"},
						{e.IDsSpecial, true, e.DecodeSpecial.Skip, "ids_special skip"},
					} {
						nDec++
						if got := tok.Decode(c.ids, c.skip); got != c.want {
							dec.add("  #%d %s\n    got  %q\n    want %q", id, c.what, got, c.want)
						}
					}
					if e.Stream != nil {
						for _, sk := range []struct {
							skip bool
							want []*string
						}{{false, e.Stream.Keep}, {true, e.Stream.Skip}} {
							nStream++
							d := tok.NewStreamDecoder(sk.skip)
							for k, id := range e.IDsSpecial {
								got := d.Add(id)
								want := ""
								if k < len(sk.want) && sk.want[k] != nil {
									want = *sk.want[k]
								}
								if got != want {
									stream.add("  #%d skip=%v step %d (id %d)\n    got  %q\n    want %q", *e.ID, sk.skip, k, id, got, want)
									break
								}
							}
						}
					}
				case e.DecodeCase != nil:
					if e.Error != "" {
						return // HF refused these ids; nothing to compare
					}
					nCases += 2
					if got := tok.Decode(e.IDs, false); got != e.Keep {
						cases.add("  case %d %v keep\n    got  %q\n    want %q", *e.DecodeCase, e.IDs, got, e.Keep)
					}
					if got := tok.Decode(e.IDs, true); got != e.Skip {
						cases.add("  case %d %v skip\n    got  %q\n    want %q", *e.DecodeCase, e.IDs, got, e.Skip)
					}
				}
			})
			require.Len(t, seen, len(corpus), "%s does not cover the whole corpus: regenerate it", path)
			t.Logf("%s: %d encodes, %d decodes, %d streams, %d extra decodes compared", name, nEnc, nDec, nStream, nCases)
			enc.check(t, "Encode", nEnc)
			dec.check(t, "Decode", nDec)
			stream.check(t, "StreamDecoder", nStream)
			cases.check(t, "Decode (extra cases)", nCases)
		})
	}
}

func short(s string) string {
	if r := []rune(s); len(r) > 60 {
		return string(r[:60]) + "…"
	}
	return s
}
