package tokenizer

// Hand-written matchers for the split regexes that real tokenizer.json files use. Go's regexp has no
// look-ahead (`\s+(?!\S)`) and is slower than a direct scanner, so each supported pattern is recognised by
// its exact source text and run by a function that reproduces what Oniguruma (the engine HF tokenizers
// uses) returns: leftmost-first alternation with backtracking, greedy quantifiers. A pattern that is not
// in this table is rejected at load with its text in the error.

// matcher reports the end of the match that starts exactly at i, or -1 when no alternative matches there.
// s is valid UTF-8 and i is a rune boundary. Matches are never empty.
type matcher func(s string, i int) int

// The patterns, as they appear in tokenizer.json after JSON unescaping.
const (
	// Qwen2/Qwen3 (cl100k-style, single digits).
	patQwen = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// cl100k / Llama 3 (digits in runs of up to three); same scanner as Qwen.
	patCL100K = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// o200k (gpt-oss).
	patO200K = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// DeepSeek-V3: three Split steps.
	patDigits3  = `\p{N}{1,3}`
	patDSKana   = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
	patDSWords  = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
	patDSWords2 = `[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_` + "`" + `{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// regexMatchers maps a supported pattern's source to its matcher.
var regexMatchers = map[string]matcher{
	patQwen:     func(s string, i int) int { return matchCL100K(s, i, 1) },
	patCL100K:   func(s string, i int) int { return matchCL100K(s, i, 3) },
	patO200K:    matchO200K,
	patDigits3:  func(s string, i int) int { return matchDigits(s, i, 3) },
	patDSKana:   matchDSKana,
	patDSWords:  matchDSWords,
	patDSWords2: matchDSWords,
}

func isNL(r rune) bool { return r == '\r' || r == '\n' }

// matchContraction matches (?i:'s|'t|'re|'ve|'m|'ll|'d) at i. Oniguruma's case folding also maps
// U+017F (long s) to s; no other code point folds to these letters.
func matchContraction(s string, i int) int {
	if i >= len(s) || s[i] != '\'' || i+1 >= len(s) {
		return -1
	}
	r1, n1 := decodeRune(s, i+1)
	switch r1 {
	case 's', 'S', 't', 'T', 'm', 'M', 'd', 'D', 0x17F:
		return i + 1 + n1
	}
	j := i + 1 + n1
	if j >= len(s) {
		return -1
	}
	c2 := s[j]
	switch {
	case (r1 == 'r' || r1 == 'R' || r1 == 'v' || r1 == 'V') && (c2 == 'e' || c2 == 'E'):
		return j + 1
	case (r1 == 'l' || r1 == 'L') && (c2 == 'l' || c2 == 'L'):
		return j + 1
	}
	return -1
}

// scanClass returns the end of the run of code points from i whose class intersects want.
func scanClass(s string, i int, want uint16) int {
	for i < len(s) {
		r, n := decodeRune(s, i)
		if classOf(r)&want == 0 {
			break
		}
		i += n
	}
	return i
}

// scanDigits returns the end of at most max \p{N} code points from i.
func scanDigits(s string, i, max int) int {
	for k := 0; k < max && i < len(s); k++ {
		r, n := decodeRune(s, i)
		if classOf(r)&cN == 0 {
			break
		}
		i += n
	}
	return i
}

func matchDigits(s string, i, max int) int {
	if e := scanDigits(s, i, max); e > i {
		return e
	}
	return -1
}

// matchSpaces runs the three whitespace alternatives every supported pattern ends with:
// \s*[\r\n]+ | \s+(?!\S) | \s+ ; the code point at i is known to be \s.
func matchSpaces(s string, i int) int {
	e := i
	lastNL := -1
	lastStart := i
	for e < len(s) {
		r, n := decodeRune(s, e)
		if classOf(r)&cSpace == 0 {
			break
		}
		if isNL(r) {
			lastNL = e
		}
		lastStart = e
		e += n
	}
	// \s*[\r\n]+ : the greedy \s* backs off to the last newline of the run.
	if lastNL >= 0 {
		return lastNL + 1
	}
	// \s+(?!\S) : the whole run at the end of the text, else the run minus its last code point.
	if e == len(s) {
		return e
	}
	if lastStart > i {
		return lastStart
	}
	// \s+
	return e
}

// matchPunctRun matches ` ?[^\s\p{L}\p{N}]+` followed by the trailing class (`[\r\n]*`, or `[\r\n/]*`
// when slash is set).
func matchPunctRun(s string, i int, slash bool) int {
	const not = cSpace | cL | cN
	j := i
	if s[i] == ' ' {
		j = i + 1
	}
	if j >= len(s) {
		return -1
	}
	r, _ := decodeRune(s, j)
	if classOf(r)&not != 0 {
		return -1
	}
	e := j
	for e < len(s) {
		r, n := decodeRune(s, e)
		if classOf(r)&not != 0 {
			break
		}
		e += n
	}
	for e < len(s) && (s[e] == '\r' || s[e] == '\n' || (slash && s[e] == '/')) {
		e++
	}
	return e
}

// matchCL100K: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,k}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
func matchCL100K(s string, i int, k int) int {
	if e := matchContraction(s, i); e >= 0 {
		return e
	}
	r0, n0 := decodeRune(s, i)
	c0 := classOf(r0)
	if c0&cL != 0 {
		return scanClass(s, i, cL)
	}
	if c0&cN == 0 && !isNL(r0) && i+n0 < len(s) {
		r1, _ := decodeRune(s, i+n0)
		if classOf(r1)&cL != 0 {
			return scanClass(s, i+n0, cL)
		}
	}
	if c0&cN != 0 {
		return scanDigits(s, i, k)
	}
	if e := matchPunctRun(s, i, false); e >= 0 {
		return e
	}
	if c0&cSpace != 0 {
		return matchSpaces(s, i)
	}
	return -1
}

// o200k letter classes: upper-ish [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] and lower-ish [\p{Ll}\p{Lm}\p{Lo}\p{M}].
const (
	oUpper = cLu | cLt | cLm | cLo | cM
	oLower = cLl | cLm | cLo | cM
)

// matchO200K: the gpt-oss pattern. The first alternative, P? U* W+ C?, needs real backtracking: the greedy
// U* gives back code points until one in W follows; it is tried with the optional P taken, then skipped.
func matchO200K(s string, i int) int {
	r0, n0 := decodeRune(s, i)
	c0 := classOf(r0)
	pOK := c0&(cL|cN) == 0 && !isNL(r0) // [^\r\n\p{L}\p{N}]
	starts := [2]int{i + n0, i}
	// Alternative 1.
	for k, q := range starts {
		if k == 0 && !pOK {
			continue
		}
		if e := matchUpperLower(s, q); e >= 0 {
			return withContraction(s, e)
		}
	}
	// Alternative 2: P? U+ W* C?
	for k, q := range starts {
		if k == 0 && !pOK {
			continue
		}
		if u := scanClass(s, q, oUpper); u > q {
			return withContraction(s, scanClass(s, u, oLower))
		}
	}
	if c0&cN != 0 {
		return scanDigits(s, i, 3)
	}
	if e := matchPunctRun(s, i, true); e >= 0 {
		return e
	}
	if c0&cSpace != 0 {
		return matchSpaces(s, i)
	}
	return -1
}

// matchUpperLower matches U* W+ at q: the longest U-prefix after which a W run starts, then that W run
// taken greedily. It returns -1 when no split works.
func matchUpperLower(s string, q int) int {
	// Boundaries of the U run: positions q = p0 < p1 < ... < pk.
	var buf [32]int
	pos := buf[:0]
	e := q
	pos = append(pos, e)
	for e < len(s) {
		r, n := decodeRune(s, e)
		if classOf(r)&oUpper == 0 {
			break
		}
		e += n
		pos = append(pos, e)
	}
	for j := len(pos) - 1; j >= 0; j-- {
		p := pos[j]
		if p >= len(s) {
			continue
		}
		r, _ := decodeRune(s, p)
		if classOf(r)&oLower != 0 {
			return scanClass(s, p, oLower)
		}
	}
	return -1
}

func withContraction(s string, e int) int {
	if c := matchContraction(s, e); c >= 0 {
		return c
	}
	return e
}

// matchDSKana: [\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+
func matchDSKana(s string, i int) int {
	e := i
	for e < len(s) {
		r, n := decodeRune(s, e)
		if !((r >= 0x4e00 && r <= 0x9fa5) || (r >= 0x3040 && r <= 0x309f) || (r >= 0x30a0 && r <= 0x30ff)) {
			break
		}
		e += n
	}
	if e == i {
		return -1
	}
	return e
}

func isASCIIPunct(c byte) bool {
	switch {
	case c >= '!' && c <= '/', c >= ':' && c <= '@', c >= '[' && c <= '`', c >= '{' && c <= '~':
		return true
	}
	return false
}

func isASCIILetter(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }

// matchDSWords: [ASCII punct][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ | ?[\p{P}\p{S}]+[\r\n]* |
// \s*[\r\n]+ | \s+(?!\S) | \s+
func matchDSWords(s string, i int) int {
	if isASCIIPunct(s[i]) && i+1 < len(s) && isASCIILetter(s[i+1]) {
		e := i + 1
		for e < len(s) && isASCIILetter(s[e]) {
			e++
		}
		return e
	}
	r0, n0 := decodeRune(s, i)
	c0 := classOf(r0)
	if c0&(cL|cP|cS) == 0 && !isNL(r0) && i+n0 < len(s) {
		r1, _ := decodeRune(s, i+n0)
		if classOf(r1)&(cL|cM) != 0 {
			return scanClass(s, i+n0, cL|cM)
		}
	}
	if c0&(cL|cM) != 0 {
		return scanClass(s, i, cL|cM)
	}
	j := i
	if s[i] == ' ' {
		j = i + 1
	}
	if j < len(s) {
		r, _ := decodeRune(s, j)
		if classOf(r)&(cP|cS) != 0 {
			e := scanClass(s, j, cP|cS)
			for e < len(s) && (s[e] == '\r' || s[e] == '\n') {
				e++
			}
			return e
		}
	}
	if c0&cSpace != 0 {
		return matchSpaces(s, i)
	}
	return -1
}
