package sidecar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/maniac-ai/mach/pkg/fault"
)

// ErrCorrupt is wrapped by errors about expert bytes whose checksum does
// not match layout.json.
var ErrCorrupt = errors.New("corrupted expert sidecar")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C returns the CRC-32C (Castagnoli) of b.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// FormatCRC32C renders a checksum as layout.json stores it.
func FormatCRC32C(c uint32) string { return fmt.Sprintf("%08x", c) }

// ParseCRC32C parses a checksum as layout.json stores it.
func ParseCRC32C(s string) (uint32, error) {
	if !isHex(s, 8) {
		return 0, fmt.Errorf("crc32c %q is not 8 hex digits", s)
	}
	v, err := strconv.ParseUint(s, 16, 32)
	return uint32(v), err
}

// CorruptError says which expert's bytes do not match their checksum.
type CorruptError struct {
	// Path is the layer file; Layer and Expert locate the slab, Offset and
	// Size its payload in the file.
	Path          string
	Layer, Expert int
	Offset, Size  int64
	Want, Got     uint32
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: %s: layer %d expert %d (bytes %d..%d) has crc32c %08x, layout.json records %08x; re-run mach-export-sidecar",
		e.Path, ErrCorrupt, e.Layer, e.Expert, e.Offset, e.Offset+e.Size, e.Got, e.Want)
}

// Unwrap classifies the error: it wraps ErrCorrupt and fault.ErrIO.
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, fault.ErrIO} }

// CheckExpert verifies payload (expert e's first Size bytes) against the
// checksum layer ly records; path names the file in the error. A layer
// without checksums passes.
func (l *Layout) CheckExpert(path string, ly Layer, e int, payload []byte) error {
	if e < 0 || e >= len(ly.Experts) {
		return nil
	}
	x := ly.Experts[e]
	want, err := ParseCRC32C(x.CRC32C)
	if err != nil {
		return invalid("layer %d expert %d: %v", ly.Index, e, err)
	}
	if int64(len(payload)) != x.Size {
		return fault.Mark(fmt.Errorf("%s: layer %d expert %d: checked %d bytes, layout.json records %d", path, ly.Index, e, len(payload), x.Size), fault.ErrIO)
	}
	if got := CRC32C(payload); got != want {
		return &CorruptError{Path: path, Layer: ly.Index, Expert: e, Offset: x.Offset, Size: x.Size, Want: want, Got: got}
	}
	return nil
}

// Progress receives the bytes checked so far and the total.
type Progress func(done, total int64)

// VerifyChecksums reads every layer file in dir and checks each expert's
// CRC-32C and, when recorded, the file's SHA-256. It returns
// ErrNoChecksums (wrapped) when the layout records neither, a
// *CorruptError for the first expert that does not match, and checks the
// sizes first (Verify). progress may be nil.
func (l *Layout) VerifyChecksums(ctx context.Context, dir string, progress Progress) error {
	if err := l.Verify(dir); err != nil {
		return err
	}
	anything := false
	for _, ly := range l.Layers {
		anything = anything || len(ly.Experts) > 0 || ly.SHA256 != ""
	}
	if !anything {
		return fault.Mark(fmt.Errorf("%s: %w", filepath.Join(dir, LayoutName), ErrNoChecksums), fault.ErrIO)
	}
	total := l.TotalBytes()
	var done int64
	buf := make([]byte, l.ExpertStride)
	for _, ly := range l.Layers {
		if err := l.verifyLayer(ctx, dir, ly, buf, func(n int64) {
			done += n
			if progress != nil {
				progress(done, total)
			}
		}); err != nil {
			return err
		}
	}
	return nil
}

// ErrNoChecksums: the layout records no checksums to verify.
var ErrNoChecksums = errors.New("layout.json records no checksums (written by an older exporter); re-run mach-export-sidecar to add them")

func (l *Layout) verifyLayer(ctx context.Context, dir string, ly Layer, buf []byte, advance func(int64)) error {
	p := filepath.Join(dir, ly.File)
	f, err := os.Open(p)
	if err != nil {
		return fault.Mark(fmt.Errorf("open %s: %w", p, err), fault.ErrIO)
	}
	defer f.Close()
	var sum hash.Hash
	if ly.SHA256 != "" {
		sum = sha256.New()
	}
	n := l.LayerExperts(ly)
	for e := 0; e < n; e++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := io.ReadFull(f, buf); err != nil {
			return fault.Mark(fmt.Errorf("%w: read %s expert %d: %v", ErrIncomplete, p, e, err), fault.ErrIO)
		}
		if sum != nil {
			sum.Write(buf)
		}
		if len(ly.Experts) > 0 {
			if err := l.CheckExpert(p, ly, e, buf[:ly.Experts[e].Size]); err != nil {
				return err
			}
		}
		advance(int64(len(buf)))
	}
	if sum != nil {
		if got := hex.EncodeToString(sum.Sum(nil)); got != ly.SHA256 && !equalFoldHex(got, ly.SHA256) {
			return fault.Mark(fmt.Errorf("%s: %w: sha256 %s, layout.json records %s; re-run mach-export-sidecar", p, ErrCorrupt, got, ly.SHA256), fault.ErrIO)
		}
	}
	return nil
}

func equalFoldHex(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'F' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'F' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
