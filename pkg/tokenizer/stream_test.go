package tokenizer

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// checkStream feeds ids one by one and checks that every chunk is complete UTF-8 and that the chunks
// plus Flush add up to Decode (see StreamDecoder for the byte-fallback exception, skipped here).
func checkStream(t testing.TB, tok *Tokenizer, ids []int32, skip bool) {
	t.Helper()
	if _, ok := tok.decoder.(decoderSequence); ok && strings.Contains(tok.Decode(ids, skip), "\uFFFD") {
		return
	}
	d := tok.NewStreamDecoder(skip)
	var b strings.Builder
	for _, id := range ids {
		chunk := d.Add(id)
		require.True(t, utf8.ValidString(chunk))
		require.False(t, strings.HasSuffix(chunk, "\uFFFD"), "chunk ends inside a character: %q", chunk)
		b.WriteString(chunk)
	}
	b.WriteString(d.Flush())
	require.Equal(t, tok.Decode(ids, skip), b.String(), "ids %v", ids)
}

func TestStreamDecoderConcatenates(t *testing.T) {
	corpus := readCorpus(t)
	rng := rand.New(rand.NewPCG(7, 7))
	for _, name := range fixtureSets {
		t.Run(name, func(t *testing.T) {
			tok := fixture(t, name)
			for _, c := range corpus {
				ids := tok.Encode(c.Text, true)
				checkStream(t, tok, ids, false)
				checkStream(t, tok, ids, true)
				if len(ids) > 2 {
					// A slice that may start and end inside a multi-byte character.
					a := rng.IntN(len(ids) - 1)
					checkStream(t, tok, ids[a:a+1+rng.IntN(len(ids)-a-1)], false)
				}
			}
		})
	}
}

// A character split over byte tokens is held back until its last byte arrives.
func TestStreamDecoderHoldsPartialCharacters(t *testing.T) {
	tok := fixture(t, "gemma3")
	var ids []int32
	for _, b := range []byte("中") {
		id, ok := tok.TokenID(string([]byte{'<', '0', 'x', "0123456789ABCDEF"[b>>4], "0123456789ABCDEF"[b&15], '>'}))
		require.True(t, ok)
		ids = append(ids, id)
	}
	d := tok.NewStreamDecoder(false)
	require.Equal(t, "", d.Add(ids[0]))
	require.Equal(t, "", d.Add(ids[1]))
	require.Equal(t, "中", d.Add(ids[2]))
	require.Equal(t, "", d.Flush())

	d = tok.NewStreamDecoder(false)
	require.Equal(t, "", d.Add(ids[0]))
	require.Equal(t, "\uFFFD", d.Flush(), "an unfinished character decodes as Decode would")

	// The exception: the run "ⲛ" + half a character decodes as four U+FFFD (HF's ByteFallback), the stream
	// has already emitted "ⲛ" and flushes the unfinished byte as one U+FFFD.
	var run []int32
	for _, b := range []byte("ⲛ\xe2") {
		id, ok := tok.TokenID(fmt.Sprintf("<0x%02X>", b))
		require.True(t, ok)
		run = append(run, id)
	}
	d = tok.NewStreamDecoder(false)
	var out strings.Builder
	for _, id := range run {
		out.WriteString(d.Add(id))
	}
	require.Equal(t, "ⲛ", out.String())
	require.Equal(t, "\uFFFD", d.Flush())
	require.Equal(t, "\uFFFD\uFFFD\uFFFD\uFFFD", tok.Decode(run, false))

	q := fixture(t, "qwen3")
	emoji := q.Encode("😀", false)
	require.Greater(t, len(emoji), 0)
	d = q.NewStreamDecoder(true)
	var got []string
	for _, id := range q.Encode("a😀b", false) {
		got = append(got, d.Add(id))
	}
	require.Equal(t, "a😀b", strings.Join(got, ""))
	for _, s := range got {
		require.True(t, utf8.ValidString(s))
	}
}

// A Tokenizer is shared by concurrent requests: encoding from several goroutines (which share the word
// cache) gives the same ids as encoding alone. Run with -race.
func TestConcurrentEncode(t *testing.T) {
	corpus := readCorpus(t)
	tok := fixture(t, "qwen3")
	want := make([][]int32, len(corpus))
	for i, c := range corpus {
		want[i] = tok.Encode(c.Text, false)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range corpus {
				k := (i*7 + g*13) % len(corpus)
				if got := tok.Encode(corpus[k].Text, false); !equalIDs(got, want[k]) {
					errs <- fmt.Sprintf("goroutine %d: corpus %d differs", g, k)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
