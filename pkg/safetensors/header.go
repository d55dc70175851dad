// Package safetensors reads and writes the safetensors format: an 8-byte
// little-endian header length, a JSON header naming every tensor's dtype,
// shape and byte range, and the packed data. Readers never trust the file:
// every length and offset is checked against the real size before anything
// is allocated or sliced. Files are memory-mapped read-only so weights are
// used in place (zero-copy).
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// MaxHeaderSize bounds the JSON header, as the reference implementation does.
const MaxHeaderSize = 100_000_000

// ErrFormat is wrapped by every error about malformed file contents.
var ErrFormat = errors.New("invalid safetensors")

// DType is a safetensors element type name, e.g. "BF16".
type DType string

// The element types mach meets.
const (
	Bool    DType = "BOOL"
	U8      DType = "U8"
	I8      DType = "I8"
	I16     DType = "I16"
	U16     DType = "U16"
	F16     DType = "F16"
	BF16    DType = "BF16"
	I32     DType = "I32"
	U32     DType = "U32"
	F32     DType = "F32"
	I64     DType = "I64"
	U64     DType = "U64"
	F64     DType = "F64"
	C64     DType = "C64"
	F8E4M3  DType = "F8_E4M3"
	F8E5M2  DType = "F8_E5M2"
	F8E8M0  DType = "F8_E8M0"
	F4      DType = "F4"
	F6E2M3  DType = "F6_E2M3"
	F6E3M2  DType = "F6_E3M2"
	F8E4M3U DType = "F8_E4M3FNUZ"
	F8E5M2U DType = "F8_E5M2FNUZ"
)

// Bits returns the element width in bits, or 0 for an unknown dtype.
func (d DType) Bits() int {
	switch d {
	case Bool, U8, I8, F8E4M3, F8E5M2, F8E8M0, F8E4M3U, F8E5M2U:
		return 8
	case I16, U16, F16, BF16:
		return 16
	case I32, U32, F32:
		return 32
	case I64, U64, F64, C64:
		return 64
	case F4:
		return 4
	case F6E2M3, F6E3M2:
		return 6
	}
	return 0
}

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int64
	// Begin and End are byte offsets relative to the start of the data
	// buffer; End is exclusive.
	Begin, End int64
}

// Size returns the tensor's byte length.
func (t TensorInfo) Size() int64 { return t.End - t.Begin }

// NumElements returns the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Header is a parsed, validated header.
type Header struct {
	// Tensors sorted by name.
	Tensors []TensorInfo
	// Metadata is the optional __metadata__ string map.
	Metadata map[string]string
	// DataOffset is the file offset of the data buffer (8 + header length).
	DataOffset int64
}

// Lookup returns the tensor named name.
func (h *Header) Lookup(name string) (TensorInfo, bool) {
	i, ok := slices.BinarySearchFunc(h.Tensors, name, func(t TensorInfo, n string) int { return strings.Compare(t.Name, n) })
	if !ok {
		return TensorInfo{}, false
	}
	return h.Tensors[i], true
}

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// ReadHeader reads and validates the header of a safetensors file of the
// given size. It reads only the header bytes.
func ReadHeader(r io.ReaderAt, fileSize int64) (*Header, error) {
	if fileSize < 8 {
		return nil, formatErr("file is %d bytes, shorter than the 8-byte header length", fileSize)
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("read header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, formatErr("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	if int64(n) > fileSize-8 {
		return nil, formatErr("header length %d is larger than the file (%d bytes)", n, fileSize)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 8); err != nil {
		return nil, fmt.Errorf("read %d-byte header: %w", n, err)
	}
	return ParseHeader(buf, fileSize-8-int64(n), 8+int64(n))
}

type rawEntry struct {
	DType       DType   `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// ParseHeader validates the JSON header buf for a data buffer of dataSize
// bytes starting at file offset dataOffset.
func ParseHeader(buf []byte, dataSize, dataOffset int64) (*Header, error) {
	trimmed := bytes.TrimRight(buf, " ")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, formatErr("header is not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, formatErr("header JSON: %v", err)
	}
	h := &Header{DataOffset: dataOffset}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, formatErr("header JSON: %v", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, formatErr("header JSON: key is not a string")
		}
		if seen[name] {
			return nil, formatErr("duplicate tensor %q", name)
		}
		seen[name] = true
		if name == "__metadata__" {
			if err := dec.Decode(&h.Metadata); err != nil {
				return nil, formatErr("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		var e rawEntry
		if err := dec.Decode(&e); err != nil {
			return nil, formatErr("tensor %q: %v", name, err)
		}
		t, err := e.check(name, dataSize)
		if err != nil {
			return nil, err
		}
		h.Tensors = append(h.Tensors, t)
	}
	if _, err := dec.Token(); err != nil {
		return nil, formatErr("header JSON: %v", err)
	}
	if dec.More() {
		return nil, formatErr("trailing data after the header object")
	}
	if rest, _ := io.ReadAll(dec.Buffered()); len(bytes.TrimSpace(rest)) != 0 {
		return nil, formatErr("trailing data after the header object")
	}
	if err := checkOverlap(h.Tensors); err != nil {
		return nil, err
	}
	slices.SortFunc(h.Tensors, func(a, b TensorInfo) int { return strings.Compare(a.Name, b.Name) })
	return h, nil
}

func (e rawEntry) check(name string, dataSize int64) (TensorInfo, error) {
	bits := e.DType.Bits()
	if bits == 0 {
		return TensorInfo{}, formatErr("tensor %q: unknown dtype %q", name, e.DType)
	}
	if len(e.DataOffsets) != 2 {
		return TensorInfo{}, formatErr("tensor %q: data_offsets must be [begin, end]", name)
	}
	if len(e.Shape) > 16 {
		return TensorInfo{}, formatErr("tensor %q: %d dimensions", name, len(e.Shape))
	}
	// Count elements with overflow checks: each dimension < 2^48 and the
	// product must stay below 2^62 bits.
	elems := uint64(1)
	for _, d := range e.Shape {
		if d < 0 || d >= 1<<48 {
			return TensorInfo{}, formatErr("tensor %q: bad dimension %d", name, d)
		}
		if d != 0 && elems > math.MaxInt64/8/uint64(d) {
			return TensorInfo{}, formatErr("tensor %q: shape %v overflows", name, e.Shape)
		}
		elems *= uint64(d)
	}
	totalBits := elems * uint64(bits)
	if totalBits%8 != 0 {
		return TensorInfo{}, formatErr("tensor %q: %d elements of %s is not a whole number of bytes", name, elems, e.DType)
	}
	begin, end := e.DataOffsets[0], e.DataOffsets[1]
	if begin < 0 || end < begin || end > dataSize {
		return TensorInfo{}, formatErr("tensor %q: data_offsets [%d, %d] outside the %d-byte data buffer", name, begin, end, dataSize)
	}
	if uint64(end-begin) != totalBits/8 {
		return TensorInfo{}, formatErr("tensor %q: %s%v needs %d bytes but data_offsets span %d", name, e.DType, e.Shape, totalBits/8, end-begin)
	}
	return TensorInfo{Name: name, DType: e.DType, Shape: slices.Clone(e.Shape), Begin: begin, End: end}, nil
}

// checkOverlap rejects tensors whose byte ranges overlap. Holes between
// tensors are tolerated (some writers pad).
func checkOverlap(ts []TensorInfo) error {
	idx := make([]int, len(ts))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := ts[a].Begin - ts[b].Begin; c != 0 {
			if c < 0 {
				return -1
			}
			return 1
		}
		return int(ts[a].End - ts[b].End)
	})
	var prevEnd int64
	prev := ""
	for _, i := range idx {
		t := ts[i]
		if t.Size() == 0 {
			continue
		}
		if t.Begin < prevEnd {
			return formatErr("tensors %q and %q overlap", prev, t.Name)
		}
		prevEnd, prev = t.End, t.Name
	}
	return nil
}
