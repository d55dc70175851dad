package hub_test

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/maniac-ai/mach/pkg/hub/hubtest"
)

// BenchmarkDownload fetches a 64 MiB shard over loopback (listing,
// transfer, sha256, fsync, rename, link) and reports its throughput as a
// fraction of the measured limit: sha256 over the same bytes in memory,
// which every verified download must at least pay.
func BenchmarkDownload(b *testing.B) {
	const size = 64 << 20
	body := blob(3, size)
	srv := hubtest.New(b)
	srv.AddFile("org/bench", "config.json", []byte(`{}`))
	srv.AddFile("org/bench", "model.safetensors", body)

	start := time.Now()
	sha256.Sum256(body)
	limit := float64(size) / time.Since(start).Seconds()

	var elapsed time.Duration
	for b.Loop() {
		dir := b.TempDir()
		env := map[string]string{"HF_HUB_CACHE": dir, "HF_ENDPOINT": srv.URL}
		r := hub.NewResolver(hub.Options{Getenv: func(k string) string { return env[k] }, CacheDir: dir})
		t0 := time.Now()
		m, err := r.Resolve(context.Background(), "org/bench", hub.Request{})
		elapsed += time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		if st, err := os.Stat(filepath.Join(m.Dir, "model.safetensors")); err != nil || st.Size() != size {
			b.Fatalf("download: %v", err)
		}
	}
	rate := float64(size) * float64(b.N) / elapsed.Seconds()
	b.SetBytes(size)
	b.ReportMetric(rate/1e6, "MB/s")
	b.ReportMetric(limit/1e6, "sha256-MB/s")
	b.ReportMetric(rate/limit, "x-limit")
}
