package tokenizer

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Splits worked out by hand from the regexes (leftmost-first alternation, greedy quantifiers with
// backtracking, the look-ahead \s+(?!\S)). The corpus parity test checks the same scanners against HF on
// real text; these pin the individual rules.
func TestSplitPatterns(t *testing.T) {
	classOnce.Do(classTableInit)
	for _, c := range []struct {
		name    string
		pattern string
		in      string
		want    []string
	}{
		{"qwen words", patQwen, "Hello world", []string{"Hello", " world"}},
		{"qwen space run before word", patQwen, "a   b", []string{"a", "  ", " b"}},
		{"qwen trailing spaces", patQwen, "a   ", []string{"a", "   "}},
		{"qwen newlines", patQwen, "a\n\nb", []string{"a", "\n\n", "b"}},
		{"qwen spaces then newline", patQwen, "a  \n  b", []string{"a", "  \n", " ", " b"}},
		{"qwen contractions", patQwen, "don't I'M", []string{"don", "'t", " I", "'M"}},
		{"qwen long s folds to s", patQwen, "it'ſ", []string{"it", "'ſ"}},
		{"qwen contraction wins over letters", patQwen, "'sa", []string{"'s", "a"}},
		{"qwen single digits", patQwen, "x123", []string{"x", "1", "2", "3"}},
		{"qwen punctuation with newline", patQwen, "a!!\n\nb", []string{"a", "!!\n\n", "b"}},
		{"qwen space punctuation", patQwen, "a !?", []string{"a", " !?"}},
		{"qwen tab joins word", patQwen, "\tx", []string{"\tx"}},
		{"qwen mark alone", patQwen, "\u0301", []string{"\u0301"}},
		{"qwen nbsp run", patQwen, "a\u00a0\u00a0b", []string{"a", "\u00a0", "\u00a0b"}},
		{"cl100k digit groups", patCL100K, "1234567", []string{"123", "456", "7"}},
		{"o200k camel case", patO200K, "HelloWorld", []string{"Hello", "World"}},
		{"o200k all caps then lower", patO200K, "XMLHttp", []string{"XMLHttp"}},
		{"o200k contraction attached", patO200K, "don't", []string{"don't"}},
		{"o200k upper contraction", patO200K, "DON'T", []string{"DON'T"}},
		{"o200k digits", patO200K, "12345", []string{"123", "45"}},
		{"o200k slash run", patO200K, "a//\nb", []string{"a", "//\n", "b"}},
		{"o200k space word", patO200K, "a b", []string{"a", " b"}},
		{"o200k marks", patO200K, "e\u0301x", []string{"e\u0301x"}},
		{"o200k lone mark", patO200K, "\u0301", []string{"\u0301"}},
		{"o200k titlecase", patO200K, "ǅungla", []string{"ǅungla"}},
		{"o200k whitespace", patO200K, "a \n b", []string{"a", " \n", " b"}},
		{"deepseek digits", patDigits3, "ab1234c", []string{"ab", "123", "4", "c"}},
		{"deepseek kana", patDSKana, "abc日本語カナdef", []string{"abc", "日本語カナ", "def"}},
		{"deepseek punct letters", patDSWords, ".hello world", []string{".hello", " world"}},
		{"deepseek marks", patDSWords, "é\u0301x", []string{"é\u0301x"}},
		{"deepseek symbols", patDSWords, "a ++\nb", []string{"a", " ++\n", "b"}},
		{"deepseek digits are gaps", patDSWords, "12", []string{"12"}},
		{"deepseek digit joins letters", patDSWords, "1ab", []string{"1ab"}},
		{"deepseek zwj gap", patDSWords, "a\u200db", []string{"a", "\u200db"}},
		{"deepseek control gap", patDSWords, "\x00", []string{"\x00"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, ok := regexMatchers[c.pattern]
			require.True(t, ok)
			sp := &splitter{match: m, behavior: behaviorIsolated}
			require.Equal(t, c.want, sp.appendWords(c.in, nil))
		})
	}
}

func TestSplitBehaviors(t *testing.T) {
	for _, c := range []struct {
		behavior splitBehavior
		invert   bool
		want     []string
	}{
		{behaviorIsolated, false, []string{"a", "-", "b", "-", "-", "c"}},
		{behaviorRemoved, false, []string{"a", "b", "c"}},
		{behaviorMergedWithPrevious, false, []string{"a-", "b-", "-", "c"}},
		{behaviorMergedWithNext, false, []string{"a", "-b", "-", "-c"}},
		{behaviorContiguous, false, []string{"a", "-", "b", "--", "c"}},
		{behaviorRemoved, true, []string{"-", "-", "-"}},
	} {
		sp := &splitter{literal: "-", behavior: c.behavior, invert: c.invert}
		require.Equal(t, c.want, sp.appendWords("a-b--c", nil), "behavior %d invert %v", c.behavior, c.invert)
	}
}

func TestAddedMatcher(t *testing.T) {
	m := newAddedMatcher([]addedToken{
		{ID: 1, Content: "<a>"},
		{ID: 2, Content: "<ab>"},
		{ID: 3, Content: "x", SingleWord: true},
		{ID: 4, Content: "[L]", LStrip: true},
		{ID: 5, Content: "[R]", RStrip: true},
	})
	type seg = segment
	for _, c := range []struct {
		in   string
		want []seg
	}{
		{"", nil},
		{"plain", []seg{{"plain", -1}}},
		{"1<a>2<ab>3", []seg{{"1", -1}, {"<a>", 1}, {"2", -1}, {"<ab>", 2}, {"3", -1}}},
		{"<a><ab>", []seg{{"<a>", 1}, {"<ab>", 2}}},
		{"<a", []seg{{"<a", -1}}},
		{"a x b", []seg{{"a ", -1}, {"x", 3}, {" b", -1}}},
		{"axb", []seg{{"axb", -1}}},
		{"a  [L]b", []seg{{"a", -1}, {"  [L]", 4}, {"b", -1}}},
		{"a[R]  b", []seg{{"a", -1}, {"[R]  ", 5}, {"b", -1}}},
	} {
		require.Equal(t, c.want, m.split(c.in, nil), "%q", c.in)
	}
}
