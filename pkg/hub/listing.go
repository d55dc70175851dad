package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/maniac-ai/mach/pkg/fault"
)

// Listing limits: a model repo's file list is small; these bound what a
// broken or hostile endpoint can make us allocate.
const (
	maxListingSize  = 64 << 20
	maxListingFiles = 200_000
	maxRepoPath     = 1024
)

// ErrListing: the hub's file listing is malformed.
var ErrListing = errors.New("malformed file listing")

// RemoteFile is one file of a repo at a commit.
type RemoteFile struct {
	// Path is the repo-relative slash path, checked to stay inside the
	// snapshot directory.
	Path string
	// Size in bytes; -1 when the listing does not say.
	Size int64
	// BlobID is the git object id (40 hex digits): the ETag of a file kept
	// in git. "" when unknown.
	BlobID string
	// SHA256 is the LFS object id (64 hex digits): the ETag of an LFS file.
	// "" for files kept in git.
	SHA256 string
}

// ETag is the file's entity tag as the hub sends it (without quotes): the
// LFS sha256 for LFS files, else the git blob id. It names the blob in the
// Hugging Face cache. "" when the listing carried neither.
func (f RemoteFile) ETag() string {
	if f.SHA256 != "" {
		return f.SHA256
	}
	return f.BlobID
}

// Listing is a repo's file list at a commit.
type Listing struct {
	// Commit is the 40-hex commit the revision resolved to.
	Commit string
	Files  []RemoteFile
}

// File returns the file at p.
func (l *Listing) File(p string) (RemoteFile, bool) {
	for _, f := range l.Files {
		if f.Path == p {
			return f, true
		}
	}
	return RemoteFile{}, false
}

// rawListing is the part of GET /api/models/{repo}/revision/{rev}?blobs=true
// mach reads: the commit and the siblings with their blob metadata.
type rawListing struct {
	SHA      *string `json:"sha"`
	Siblings []struct {
		RFilename *string `json:"rfilename"`
		Size      *int64  `json:"size"`
		BlobID    string  `json:"blobId"`
		LFS       *struct {
			SHA256 string `json:"sha256"`
			Size   *int64 `json:"size"`
		} `json:"lfs"`
	} `json:"siblings"`
}

// ParseListing parses and checks the answer of the hub's model-info API at
// a revision with blob metadata (GET /api/models/{repo}/revision/{rev}
// ?blobs=true: {"sha": commit, "siblings": [{"rfilename", "blobId",
// "size", "lfs": {"sha256", "size"}}]}). Every path must be a plain
// relative path (no "..", no absolute or backslash paths, no .git), ids
// must be lower-case hex of the right length, sizes non-negative, and no
// path may repeat: a listing names files written to disk.
func ParseListing(b []byte) (*Listing, error) {
	bad := func(format string, args ...any) error {
		return fault.Mark(fmt.Errorf("%w: %s", ErrListing, fmt.Sprintf(format, args...)), fault.ErrNetwork)
	}
	if len(b) > maxListingSize {
		return nil, bad("larger than %d bytes", maxListingSize)
	}
	var raw rawListing
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, bad("%v", err)
	}
	if raw.SHA == nil || !isHex(*raw.SHA, 40) {
		return nil, bad("no 40-hex commit in \"sha\"")
	}
	if raw.Siblings == nil {
		return nil, bad("no \"siblings\" list")
	}
	if len(raw.Siblings) > maxListingFiles {
		return nil, bad("%d files, more than %d", len(raw.Siblings), maxListingFiles)
	}
	l := &Listing{Commit: *raw.SHA, Files: make([]RemoteFile, 0, len(raw.Siblings))}
	seen := make(map[string]bool, len(raw.Siblings))
	for i, s := range raw.Siblings {
		if s.RFilename == nil {
			return nil, bad("file %d has no rfilename", i)
		}
		p := *s.RFilename
		if err := checkRepoPath(p); err != nil {
			return nil, bad("file %q: %v", p, err)
		}
		if seen[p] {
			return nil, bad("file %q listed twice", p)
		}
		seen[p] = true
		f := RemoteFile{Path: p, Size: -1, BlobID: s.BlobID}
		if f.BlobID != "" && !isHex(f.BlobID, 40) {
			return nil, bad("file %q: blobId %q is not 40 hex digits", p, f.BlobID)
		}
		if s.Size != nil {
			if *s.Size < 0 {
				return nil, bad("file %q: negative size", p)
			}
			f.Size = *s.Size
		}
		if s.LFS != nil {
			if !isHex(s.LFS.SHA256, 64) {
				return nil, bad("file %q: lfs.sha256 %q is not 64 hex digits", p, s.LFS.SHA256)
			}
			f.SHA256 = s.LFS.SHA256
			if s.LFS.Size != nil {
				if *s.LFS.Size < 0 {
					return nil, bad("file %q: negative lfs.size", p)
				}
				f.Size = *s.LFS.Size // the object's size, not the pointer's
			}
		}
		l.Files = append(l.Files, f)
	}
	return l, nil
}

// checkRepoPath accepts a repo-relative slash path that stays inside the
// directory it is joined to on every platform.
func checkRepoPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > maxRepoPath:
		return fmt.Errorf("longer than %d bytes", maxRepoPath)
	case strings.HasPrefix(p, "/"):
		return errors.New("absolute path")
	case strings.ContainsAny(p, "\\:"):
		return errors.New(`'\' or ':' in path`)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return errors.New("control character in path")
		}
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".", "..":
			return errors.New("empty, '.' or '..' path segment")
		case ".git":
			return errors.New(".git path")
		}
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ListingURL is the model-info URL of a repo at a revision with blob
// metadata.
func (c *Client) ListingURL(repo, revision string) string {
	return c.Endpoint + "/api/models/" + repo + "/revision/" + url.PathEscape(revision) + "?blobs=true"
}

// List fetches the repo's file list at revision, with sizes and hashes.
func (c *Client) List(ctx context.Context, repo, revision string) (*Listing, error) {
	if err := ValidateRepoID(repo); err != nil {
		return nil, err
	}
	if err := ValidateRevision(revision); err != nil {
		return nil, err
	}
	u := c.ListingURL(repo, revision)
	b, _, err := c.fetch(ctx, repo, revision, u, maxListingSize)
	if err != nil {
		return nil, err
	}
	l, err := ParseListing(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	return l, nil
}
