package hub

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/maniac-ai/mach/pkg/atomicfile"
	"github.com/maniac-ai/mach/pkg/fault"
)

// The Hugging Face hub cache layout, shared with huggingface_hub so either
// tool reuses what the other downloaded:
//
//	<cache>/models--<org>--<name>/
//	    refs/<revision>            the commit the revision resolved to (no newline)
//	    blobs/<etag>               file contents, named by their ETag: the LFS
//	                               sha256, or the git blob id for small files
//	    blobs/<etag>.incomplete    a download in progress, resumed with Range
//	    snapshots/<commit>/<path>  relative symlinks into ../blobs
//	<cache>/.locks/models--<org>--<name>/<etag>.lock
//	                               held while a blob is downloaded (flock, as
//	                               Python's filelock takes it)

// RepoFolder is a repo's directory name in a hub cache: models--org--name.
func RepoFolder(repo string) string {
	return "models--" + strings.ReplaceAll(repo, "/", "--")
}

// cacheRepo is one repo in one hub cache directory.
type cacheRepo struct {
	root string // the hub cache directory
	repo string
}

func (c cacheRepo) dir() string { return filepath.Join(c.root, RepoFolder(c.repo)) }

func (c cacheRepo) snapshot(commit string) string {
	return filepath.Join(c.dir(), "snapshots", commit)
}

func (c cacheRepo) blob(etag string) string { return filepath.Join(c.dir(), "blobs", etag) }

func (c cacheRepo) lockPath(etag string) string {
	return filepath.Join(c.root, ".locks", RepoFolder(c.repo), etag+".lock")
}

// readRef returns the commit refs/<revision> names, or "".
func (c cacheRepo) readRef(revision string) string {
	b, err := os.ReadFile(filepath.Join(c.dir(), "refs", filepath.FromSlash(revision)))
	if err != nil {
		return ""
	}
	ref := strings.TrimSpace(string(b))
	if !plainSegment(ref) {
		return ""
	}
	return ref
}

// writeRef records that revision resolved to commit.
func (c cacheRepo) writeRef(revision, commit string) error {
	if revision == commit {
		return nil
	}
	p := filepath.Join(c.dir(), "refs", filepath.FromSlash(revision))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fault.Mark(fmt.Errorf("create %s: %w", filepath.Dir(p), err), fault.ErrIO)
	}
	if err := atomicfile.WriteFile(p, []byte(commit), 0o644); err != nil {
		return fault.Mark(err, fault.ErrIO)
	}
	return nil
}

// snapshotFor is the local snapshot directory of revision, without the
// network: the revision itself when it is a commit, else the commit
// refs/<revision> names, else a snapshot named after the revision (what a
// config-only fetch leaves when the hub sent no commit). "" when none
// exists.
func (c cacheRepo) snapshotFor(revision string) (dir, commit string) {
	var names []string
	if isCommit(revision) {
		names = append(names, revision)
	} else if ref := c.readRef(revision); ref != "" {
		names = append(names, ref)
	}
	names = append(names, snapshotName(revision, ""))
	for _, n := range names {
		d := c.snapshot(n)
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			if isCommit(n) {
				commit = n
			}
			return d, commit
		}
	}
	return "", ""
}

// plainSegment: a single, non-special path segment.
func plainSegment(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, `/\`) && len(s) <= 255
}

// link points snapshot/<rel> at blob with a relative symlink, replacing
// whatever is there (a stale link, a plain file from a config-only fetch)
// atomically.
func link(snapshot, rel, blob string) error {
	p := filepath.Join(snapshot, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fault.Mark(fmt.Errorf("create %s: %w", filepath.Dir(p), err), fault.ErrIO)
	}
	target, err := filepath.Rel(filepath.Dir(p), blob)
	if err != nil {
		return fault.Mark(fmt.Errorf("link %s: %w", p, err), fault.ErrIO)
	}
	if cur, err := os.Readlink(p); err == nil && cur == target {
		return nil
	}
	tmp := fmt.Sprintf("%s.tmp-%d-%d", p, os.Getpid(), time.Now().UnixNano())
	if err := os.Symlink(target, tmp); err != nil {
		return fault.Mark(fmt.Errorf("link %s: %w (the cache needs a file system with symlinks)", p, err), fault.ErrIO)
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return fault.Mark(fmt.Errorf("link %s: %w", p, err), fault.ErrIO)
	}
	return nil
}

// lockBlob takes the blob's download lock, waiting for another process
// (mach or Python) that holds it; it returns the unlock function.
func (c cacheRepo) lockBlob(ctx context.Context, etag string) (func(), error) {
	p := c.lockPath(etag)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fault.Mark(fmt.Errorf("create %s: %w", filepath.Dir(p), err), fault.ErrIO)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("open lock %s: %w", p, err), fault.ErrIO)
	}
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fault.Mark(fmt.Errorf("lock %s: %w", p, err), fault.ErrIO)
		}
		if ok {
			return func() { unlock(f); f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// exists reports whether p is a regular file (following links) of size
// want (any size when want < 0).
func exists(p string, want int64) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && (want < 0 || st.Size() == want)
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
