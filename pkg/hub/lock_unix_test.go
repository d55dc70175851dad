//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package hub_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/stretchr/testify/require"
)

func flock(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }

func TestBlobLockWaitsForAnotherDownloader(t *testing.T) {
	files := map[string]fakeFile{
		"config.json":       {body: []byte(`{}`)},
		"model.safetensors": {body: blob(9, 1000), lfs: true},
	}
	f := newHFHub(t, repo, files)
	r := newResolver(t, f)
	// Another process (mach or Python's filelock) holds the shard's lock.
	lock := filepath.Join(r.HFCache, ".locks", "models--org--model", files["model.safetensors"].sha256()+".lock")
	require.NoError(t, os.MkdirAll(filepath.Dir(lock), 0o755))
	held, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE, 0o644)
	require.NoError(t, err)
	require.NoError(t, flock(held))
	done := make(chan error, 1)
	go func() {
		_, err := r.Resolve(context.Background(), repo, hub.Request{})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("resolved while the blob's lock was held: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, held.Close()) // releases the lock
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting after the lock was released")
	}
}
