package tokenizer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// The real tokenizers are fetched by `make fixtures` (tools/fixtures/tokenizers.sh) into a git-ignored
// cache; the corpus and the Hugging Face reference outputs are committed next to it.
var (
	cacheDir    = filepath.Join("..", "..", "testdata", "cache", "tokenizers")
	refDir      = filepath.Join("..", "..", "testdata", "tokenizers")
	corpusPath  = filepath.Join(refDir, "corpus.jsonl")
	fixtureSets = []string{"qwen3", "gptoss", "gemma3", "deepseek_v3"}
)

// fixtureDir returns the cached tokenizer directory of name. A missing cache fails the test with what to
// run; MACH_ALLOW_MISSING_FIXTURES=1 turns that into a skip for local convenience (CI never sets it).
func fixtureDir(tb testing.TB, name string) string {
	tb.Helper()
	dir := filepath.Join(cacheDir, name)
	if _, err := os.Stat(filepath.Join(dir, FileTokenizer)); err != nil {
		if os.Getenv("MACH_ALLOW_MISSING_FIXTURES") == "1" {
			tb.Skipf("%s missing (MACH_ALLOW_MISSING_FIXTURES=1): run `make fixtures`", dir)
		}
		tb.Fatalf("%s is missing: run `make fixtures` (tools/fixtures/tokenizers.sh) to fetch the tokenizers", dir)
	}
	return dir
}

var (
	loadedMu sync.Mutex
	loaded   = map[string]*Tokenizer{}
)

// fixture loads (once per test binary) the cached tokenizer name.
func fixture(tb testing.TB, name string) *Tokenizer {
	tb.Helper()
	dir := fixtureDir(tb, name)
	loadedMu.Lock()
	defer loadedMu.Unlock()
	if t, ok := loaded[name]; ok {
		return t
	}
	t, err := Load(dir)
	require.NoError(tb, err)
	loaded[name] = t
	return t
}

type corpusLine struct {
	ID   int    `json:"id"`
	Cat  string `json:"cat"`
	Text string `json:"text"`
}

func readCorpus(tb testing.TB) []corpusLine {
	tb.Helper()
	var out []corpusLine
	forEachLine(tb, corpusPath, func(line []byte) {
		var c corpusLine
		require.NoError(tb, json.Unmarshal(line, &c))
		out = append(out, c)
	})
	require.GreaterOrEqual(tb, len(out), 300, "corpus too small")
	return out
}

// forEachLine calls fn for each non-empty line of a JSON-lines file (split on '\n' only).
func forEachLine(tb testing.TB, path string, fn func(line []byte)) {
	tb.Helper()
	f, err := os.Open(path)
	require.NoError(tb, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			fn(line)
		}
	}
	require.NoError(tb, sc.Err())
}

func fileSHA256(tb testing.TB, path string) string {
	tb.Helper()
	data, err := os.ReadFile(path)
	require.NoError(tb, err)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
