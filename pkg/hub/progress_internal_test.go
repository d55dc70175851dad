package hub

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBarLine(t *testing.T) {
	tests := []struct {
		done, size, fetched int64
		elapsed             time.Duration
		want                string
	}{
		{1_200_000_000, 4_900_000_000, 1_200_000_000, 10 * time.Second, "f  1.20 GB / 4.90 GB   24%  120.0 MB/s  ETA 31s"},
		{0, 4_900_000_000, 0, 0, "f  0 B / 4.90 GB    0%  0 B/s"},
		{2_000_000, 10_000_000, 1_000_000, time.Second, "f  2.0 MB / 10.0 MB   20%  1.0 MB/s  ETA 8s"}, // resumed bytes do not inflate the rate
		{10_000_000, 10_000_000, 10_000_000, time.Second, "f  10.0 MB / 10.0 MB  100%  10.0 MB/s"},
		{500, -1, 500, time.Second, "f  500 B  500 B/s"},
		{1, 1_000_000_000, 1, time.Second, "f  1 B / 1.00 GB    0%  1 B/s  ETA >99h"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, barLine("f", tt.done, tt.size, tt.fetched, tt.elapsed))
	}
	require.Equal(t, "2h05m", eta(2*time.Hour+5*time.Minute))
	require.Equal(t, "3m07s", eta(3*time.Minute+7*time.Second))
}

func TestProgressRedrawsInPlace(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	p := newProgress(&out, clock, "org/m@abc", 2, 3_000)
	a := p.file("a.safetensors", 2_000)
	b := p.file("b.json", 1_000)
	a.resumeAt(500) // an earlier run left 500 bytes
	_, _ = a.Write(make([]byte, 500))
	now = now.Add(time.Second)
	p.draw()
	first := out.String()
	require.Contains(t, first, "a.safetensors  1.0 kB / 2.0 kB   50%  500 B/s  ETA 2s")
	require.Contains(t, first, "org/m@abc  0/2 files  1.0 kB / 3.0 kB   33%  500 B/s  ETA 4s")
	require.Equal(t, 3, strings.Count(first, "\n"), "one line per file and the total")

	b.finish(true)
	a.finish(true)
	out.Reset()
	p.draw()
	require.True(t, strings.HasPrefix(out.String(), "\033[3A"), "moves back over the previous lines")
	require.Contains(t, out.String(), "org/m@abc  2/2 files  3.0 kB / 3.0 kB  100%")
	require.Equal(t, 1, strings.Count(out.String(), "\n"))

	var nilp *progress // --json: draws nothing, and every method is safe
	nilp.file("x", 1).resumeAt(1)
	nilp.cached(5)
	nilp.draw()
}
