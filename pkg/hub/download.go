package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/maniac-ai/mach/pkg/atomicfile"
	"github.com/maniac-ai/mach/pkg/fault"
)

// ErrChecksum: a downloaded file does not hash to the id the hub lists.
var ErrChecksum = errors.New("checksum mismatch")

// Download defaults.
const (
	DefaultWorkers = 8
	DefaultRetries = 5
	// DefaultStall is how long a body may send nothing before the
	// connection is dropped and the file resumed.
	DefaultStall     = 60 * time.Second
	defaultRetryWait = time.Second
	maxRetryWait     = 30 * time.Second
	copyBuffer       = 1 << 20
)

// downloader fetches files of one repo at one commit into one hub cache.
type downloader struct {
	client  *Client
	hc      *http.Client
	cache   cacheRepo
	commit  string
	prog    *progress
	retries int
	wait    time.Duration
	stall   time.Duration

	mu      sync.Mutex
	fetched []string
	bytes   int64
}

func (d *downloader) snapshot() string { return d.cache.snapshot(d.commit) }

// fetch makes snapshots/<commit>/<f.Path> point at a verified blob,
// downloading it unless the blob is already there.
func (d *downloader) fetch(ctx context.Context, f RemoteFile) error {
	if f.ETag() == "" {
		var err error
		if f, err = d.head(ctx, f); err != nil {
			return err
		}
	}
	etag := f.ETag()
	blob := d.cache.blob(etag)
	if exists(blob, f.Size) {
		d.prog.cached(f.Size)
		return link(d.snapshot(), f.Path, blob)
	}
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		return fault.Mark(fmt.Errorf("create %s: %w", filepath.Dir(blob), err), fault.ErrIO)
	}
	unlock, err := d.cache.lockBlob(ctx, etag)
	if err != nil {
		return err
	}
	defer unlock()
	if exists(blob, f.Size) { // another process finished it while we waited
		d.prog.cached(f.Size)
		return link(d.snapshot(), f.Path, blob)
	}
	fp := d.prog.file(f.Path, f.Size)
	err = d.download(ctx, f, blob, fp)
	fp.finish(err == nil)
	if err != nil {
		return err
	}
	return link(d.snapshot(), f.Path, blob)
}

// download fetches f into blob.incomplete, resuming what is there, retries
// broken transfers from where they stopped, verifies the whole file and
// renames it into place. A corrupt file is removed, never renamed.
func (d *downloader) download(ctx context.Context, f RemoteFile, blob string, fp *fileProgress) error {
	tmp := blob + ".incomplete"
	u := d.client.URL(d.cache.repo, d.commit, f.Path)
	var sum []byte
	wait := d.wait
	for attempt := 0; ; attempt++ {
		var err error
		sum, err = d.transfer(ctx, u, tmp, f, fp)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retryable(err) || attempt >= d.retries {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, maxRetryWait)
	}
	if err := verify(tmp, f, sum); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fault.Mark(fmt.Errorf("chmod %s: %w", tmp, err), fault.ErrIO)
	}
	if err := os.Rename(tmp, blob); err != nil {
		return fault.Mark(fmt.Errorf("rename %s: %w", tmp, err), fault.ErrIO)
	}
	if err := atomicfile.SyncDir(filepath.Dir(blob)); err != nil {
		return fault.Mark(err, fault.ErrIO)
	}
	d.mu.Lock()
	d.fetched = append(d.fetched, f.Path)
	if st, err := os.Stat(blob); err == nil {
		d.bytes += st.Size()
	}
	d.mu.Unlock()
	return nil
}

// errStalled cancels a request whose body stopped arriving.
var errStalled = errors.New("stalled")

// transfer makes one request for the rest of f (Range from what tmp
// holds) and appends the body to tmp. It returns the sha256 of the whole
// file when it is complete.
func (d *downloader) transfer(ctx context.Context, u, tmp string, f RemoteFile, fp *fileProgress) ([]byte, error) {
	var have int64
	if st, err := os.Stat(tmp); err == nil {
		have = st.Size()
	}
	if f.Size >= 0 && have > f.Size {
		have = 0 // not a prefix of this file
	}
	h := sha256.New()
	if f.Size >= 0 && have == f.Size && have > 0 {
		// Complete from an earlier run that stopped before the rename.
		fp.resumeAt(have)
		if err := hashFile(h, tmp, have); err != nil {
			return nil, err
		}
		return h.Sum(nil), nil
	}
	header := http.Header{}
	if have > 0 {
		header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	resp, err := d.client.do(rctx, http.MethodGet, u, header, d.hc)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if start, ok := rangeStart(resp.Header.Get("Content-Range")); !ok || start != have {
			_ = os.Truncate(tmp, 0)
			return nil, fault.Mark(&serverError{status: 503, msg: fmt.Sprintf("%s answered Content-Range %q to a request from byte %d; restarting the file", d.client.Endpoint, resp.Header.Get("Content-Range"), have)}, fault.ErrNetwork)
		}
		if err := hashFile(h, tmp, have); err != nil {
			return nil, err
		}
	case http.StatusOK:
		have = 0 // the server ignored the range: start over
	case http.StatusRequestedRangeNotSatisfiable:
		_ = os.Truncate(tmp, 0)
		return nil, fault.Mark(&serverError{status: 503, msg: fmt.Sprintf("%s cannot resume %s from byte %d; restarting the file", d.client.Endpoint, f.Path, have)}, fault.ErrNetwork)
	default:
		return nil, statusError(resp, d.client, d.cache.repo, d.commit, u)
	}
	// Opened only now, so a refused request leaves no file behind.
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("open %s: %w", tmp, err), fault.ErrIO)
	}
	defer out.Close()
	if err := out.Truncate(have); err != nil {
		return nil, fault.Mark(fmt.Errorf("truncate %s: %w", tmp, err), fault.ErrIO)
	}
	if _, err := out.Seek(have, io.SeekStart); err != nil {
		return nil, fault.Mark(fmt.Errorf("seek %s: %w", tmp, err), fault.ErrIO)
	}
	fp.resumeAt(have)

	timer := time.AfterFunc(d.stall, func() { cancel(errStalled) })
	defer timer.Stop()
	buf := make([]byte, copyBuffer)
	total := have
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			timer.Reset(d.stall)
			if _, err := out.Write(buf[:n]); err != nil {
				return nil, fault.Mark(fmt.Errorf("write %s: %w", tmp, err), fault.ErrIO)
			}
			h.Write(buf[:n])
			_, _ = fp.Write(buf[:n])
			total += int64(n)
			if f.Size >= 0 && total > f.Size {
				_ = out.Truncate(0)
				return nil, fault.Mark(fmt.Errorf("%w: %s: the hub sent more than the %d bytes it lists; the partial file was removed", ErrChecksum, f.Path, f.Size), fault.ErrNetwork)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			why := rerr.Error()
			if errors.Is(context.Cause(rctx), errStalled) {
				why = fmt.Sprintf("no data for %s", d.stall)
			}
			return nil, fault.Mark(fmt.Errorf("%w after %s of %s: %s", errBodyBroken, humanBytes(total), f.Path, why), fault.ErrNetwork)
		}
	}
	if f.Size >= 0 && total < f.Size {
		return nil, fault.Mark(fmt.Errorf("%w: the connection closed after %s of %s (%s)", errBodyBroken, humanBytes(total), humanBytes(f.Size), f.Path), fault.ErrNetwork)
	}
	if err := out.Sync(); err != nil {
		return nil, fault.Mark(fmt.Errorf("fsync %s: %w", tmp, err), fault.ErrIO)
	}
	return h.Sum(nil), nil
}

// hashFile feeds the first n bytes of the file at p to h (a resumed
// download's bytes from an earlier attempt).
func hashFile(h hash.Hash, p string, n int64) error {
	if n == 0 {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return fault.Mark(fmt.Errorf("open %s: %w", p, err), fault.ErrIO)
	}
	defer f.Close()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, n)); err != nil {
		return fault.Mark(fmt.Errorf("read %s: %w", p, err), fault.ErrIO)
	}
	return nil
}

// rangeStart parses the first byte of "bytes START-END/TOTAL".
func rangeStart(cr string) (int64, bool) {
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, false
	}
	s, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// verify checks a finished download against the hub's ids: the LFS sha256
// (sum, computed while downloading) or, for files kept in git, the git
// blob id, sha1("blob <size>\x00" + content). An ETag that is neither
// leaves only the size check.
func verify(tmp string, f RemoteFile, sum []byte) error {
	st, err := os.Stat(tmp)
	if err != nil {
		return fault.Mark(fmt.Errorf("stat %s: %w", tmp, err), fault.ErrIO)
	}
	if f.Size >= 0 && st.Size() != f.Size {
		return fault.Mark(fmt.Errorf("%w: %s is %d bytes, the hub lists %d; the partial file was removed, run again to download it anew", ErrChecksum, f.Path, st.Size(), f.Size), fault.ErrNetwork)
	}
	var got, want, algo string
	switch {
	case isHex(f.SHA256, 64):
		got, want, algo = hex.EncodeToString(sum), f.SHA256, "sha256"
	case isHex(f.BlobID, 40):
		g, err := gitBlobID(tmp, st.Size())
		if err != nil {
			return err
		}
		got, want, algo = g, f.BlobID, "git blob id"
	default:
		return nil
	}
	if got != want {
		return fault.Mark(fmt.Errorf("%w: %s: the %s of the download is %s, the hub lists %s; the partial file was removed, run again to download it anew", ErrChecksum, f.Path, algo, got, want), fault.ErrNetwork)
	}
	return nil
}

// gitBlobID is the git object id of the file's content.
func gitBlobID(p string, size int64) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fault.Mark(fmt.Errorf("open %s: %w", p, err), fault.ErrIO)
	}
	defer f.Close()
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", size)
	if _, err := io.Copy(h, f); err != nil {
		return "", fault.Mark(fmt.Errorf("read %s: %w", p, err), fault.ErrIO)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// head asks the hub for a file's ETag and size when the listing did not
// carry them (a mirror that ignores blobs=true), reading the headers of the
// resolve URL itself rather than of the CDN it redirects to, as
// huggingface_hub does.
func (d *downloader) head(ctx context.Context, f RemoteFile) (RemoteFile, error) {
	u := d.client.URL(d.cache.repo, d.commit, f.Path)
	hc := *d.hc
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("too many redirects")
		}
		if req.URL.Host != via[0].URL.Host {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := d.client.do(ctx, http.MethodHead, u, nil, &hc)
	if err != nil {
		return f, err
	}
	resp.Body.Close()
	if resp.StatusCode < 300 || resp.StatusCode >= 400 {
		if err := statusError(resp, d.client, d.cache.repo, d.commit, u); err != nil {
			return f, err
		}
	}
	etag := resp.Header.Get(HeaderLinkedETag)
	if etag == "" {
		etag = resp.Header.Get("ETag")
	}
	etag = normalizeETag(etag)
	if !safeETag(etag) {
		return f, fault.Mark(fmt.Errorf("%s: the hub sent no usable ETag for %s (%q); cannot name its cache blob", u, f.Path, etag), fault.ErrNetwork)
	}
	if isHex(etag, 64) {
		f.SHA256 = etag
	} else {
		f.BlobID = etag // verified only when it is a 40-hex git id
	}
	size := resp.Header.Get(HeaderLinkedSize)
	if size == "" {
		size = resp.Header.Get("Content-Length")
	}
	if n, err := strconv.ParseInt(size, 10, 64); err == nil && n >= 0 {
		f.Size = n
	}
	return f, nil
}

// normalizeETag drops a weak-validator prefix and the quotes.
func normalizeETag(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	return strings.Trim(s, `"`)
}

// safeETag: usable as a blob file name.
func safeETag(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
