package tokenizer

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"golang.org/x/text/unicode/norm"
)

// testdata/normalization.json was written with Python's unicodedata, which (like the Rust crate HF
// tokenizers uses) does not insert U+034F after 30 non-starters as x/text does.
func TestNormalizeMatchesUnicodedata(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "normalization.json"))
	require.NoError(t, err)
	var file struct {
		Cases []struct {
			Form string `json:"form"`
			In   string `json:"in"`
			Want string `json:"want"`
		} `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(data, &file))
	require.NotEmpty(t, file.Cases)
	forms := map[string]norm.Form{"NFC": norm.NFC, "NFD": norm.NFD, "NFKC": norm.NFKC, "NFKD": norm.NFKD}
	for i, c := range file.Cases {
		form, ok := forms[c.Form]
		require.True(t, ok, c.Form)
		require.Equal(t, c.Want, normalizeExact(form, c.In), "case %d (%s) %+q", i, c.Form, c.In)
		require.Equal(t, c.Want, normalizeSlow(form, c.In), "slow path, case %d (%s) %+q", i, c.Form, c.In)
	}
}

// Where x/text inserts no CGJ its result is the reference; the exact path and the slow path must agree
// with it on random text full of combining marks, Hangul jamo and compatibility characters.
func TestNormalizeAgreesWithXText(t *testing.T) {
	alphabet := []rune("aeoAEOxz \u0300\u0301\u0302\u0308\u0316\u0323\u0327\u0345\u0313\u093c\u0915\u0958" +
		"\u1100\u1161\u11a8\uac00\u00c5\u212b\ufb01\u00e9\u1e9b\u0387\u2126\u3099\u304b")
	rng := rand.New(rand.NewPCG(1, 2))
	for _, form := range []norm.Form{norm.NFC, norm.NFD, norm.NFKC, norm.NFKD} {
		for i := 0; i < 3000; i++ {
			var b strings.Builder
			for n := rng.IntN(12); n >= 0; n-- {
				b.WriteRune(alphabet[rng.IntN(len(alphabet))])
			}
			s := b.String()
			want := form.String(s)
			require.Equal(t, want, normalizeExact(form, s), "%+q", s)
			require.Equal(t, want, normalizeSlow(form, s), "slow path %+q", s)
		}
	}
}

// Python's bytes.decode("utf-8", errors="replace") outputs (maximal subparts, as Rust's from_utf8_lossy).
func TestLossyUTF8(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"\xff", "\ufffd"},
		{"a\xffb", "a\ufffdb"},
		{"\xe2\x82", "\ufffd"},
		{"\xe2\x82a", "\ufffda"},
		{"\xe2\x82\xac", "\u20ac"},
		{"\xf0\x9f\x98", "\ufffd"},
		{"\xf0\x9f\x98\x80", "\U0001f600"},
		{"\xed\xa0\x80", "\ufffd\ufffd\ufffd"},
		{"\xc0\xaf", "\ufffd\ufffd"},
		{"\xe0\x80\xaf", "\ufffd\ufffd\ufffd"},
		{"\xf4\x90\x80\x80", "\ufffd\ufffd\ufffd\ufffd"},
		{"\xf8\x88\x80\x80\x80", "\ufffd\ufffd\ufffd\ufffd\ufffd"},
		{"\x80\x80", "\ufffd\ufffd"},
		{"\xc3", "\ufffd"},
		{"\xc3(", "\ufffd("},
		{"\xe0\xa0", "\ufffd"},
		{"\xf0\x90\x80", "\ufffd"},
		{"a\xf1\x80\x80\xe1\x80\xc2b\x80", "a\ufffd\ufffd\ufffdb\ufffd"},
		{"\xef\xbf\xbd", "\ufffd"},
		{"caf\xc3\xa9\xff", "caf\u00e9\ufffd"},
		{"", ""},
	} {
		require.Equal(t, c.want, lossyUTF8([]byte(c.in)), "%q", c.in)
		require.Equal(t, c.want, validString(c.in), "%q", c.in)
		require.True(t, utf8.ValidString(validString(c.in)))
	}
}

func TestByteLevelAlphabet(t *testing.T) {
	seen := map[rune]bool{}
	for b := 0; b < 256; b++ {
		r := byteToChar[b]
		require.False(t, seen[r], "byte %d maps to a repeated character", b)
		seen[r] = true
		got, ok := byteLevelDecode(string(r), nil)
		require.True(t, ok)
		require.Equal(t, []byte{byte(b)}, got)
	}
	require.Equal(t, 'Ġ', byteToChar[' '])
	require.Equal(t, 'Ċ', byteToChar['\n'])
	require.Equal(t, "Ġhello", byteLevelEncode(" hello"))
	_, ok := byteLevelDecode("<｜User｜>", nil)
	require.False(t, ok)
}

func TestClassTable(t *testing.T) {
	classOnce.Do(classTableInit)
	for _, c := range []struct {
		r    rune
		want uint16
	}{
		{'a', cL | cLl}, {'A', cL | cLu}, {'ǅ', cL | cLt}, {'ʰ', cL | cLm}, {'中', cL | cLo},
		{'\u0301', cM}, {'5', cN}, {'½', cN}, {'Ⅻ', cN}, {'!', cP}, {'$', cS}, {'😀', cS},
		{' ', cSpace}, {'\u0085', cSpace}, {'\u00a0', cSpace}, {'\u3000', cSpace}, {'\u2028', cSpace},
		{'\u200b', 0}, {'\u200d', 0}, {0x10FFFF, 0}, {0x20000, cL | cLo}, {0xE0041, 0},
	} {
		require.Equal(t, c.want, classOf(c.r), "%U", c.r)
		require.Equal(t, c.want, classSlow(c.r), "%U (slow)", c.r)
	}
}
