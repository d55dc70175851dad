package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/maniac-ai/mach/pkg/atomicfile"
)

// WriteTensor is one tensor to write. Data must hold exactly the bytes the
// dtype and shape need.
type WriteTensor struct {
	Name  string
	DType DType
	Shape []int64
	Data  []byte
}

type headerEntry struct {
	DType       DType    `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// Write writes tensors in safetensors format. Tensors are laid out widest
// dtype first, then by name, so typed views of the mapped data stay aligned;
// the header is padded with spaces so the data starts at a multiple of 8.
func Write(w io.Writer, tensors []WriteTensor, metadata map[string]string) error {
	order := slices.Clone(tensors)
	slices.SortStableFunc(order, func(a, b WriteTensor) int {
		if c := b.DType.Bits() - a.DType.Bits(); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	hdr := map[string]any{}
	if len(metadata) > 0 {
		hdr["__metadata__"] = metadata
	}
	var off int64
	for _, t := range order {
		bits := t.DType.Bits()
		if bits == 0 {
			return fmt.Errorf("safetensors: tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		if t.Name == "__metadata__" || t.Name == "" {
			return fmt.Errorf("safetensors: invalid tensor name %q", t.Name)
		}
		if _, dup := hdr[t.Name]; dup {
			return fmt.Errorf("safetensors: duplicate tensor %q", t.Name)
		}
		n := int64(bits)
		for _, d := range t.Shape {
			n *= d
		}
		if n%8 != 0 || n/8 != int64(len(t.Data)) {
			return fmt.Errorf("safetensors: tensor %q: %s%v needs %d bits, have %d bytes", t.Name, t.DType, t.Shape, n, len(t.Data))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		hdr[t.Name] = headerEntry{DType: t.DType, Shape: shape, DataOffsets: [2]int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	if pad := (8 - (8+len(js))%8) % 8; pad > 0 {
		js = append(js, bytes.Repeat([]byte{' '}, pad)...)
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(js)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return err
	}
	if _, err := w.Write(js); err != nil {
		return err
	}
	for _, t := range order {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes tensors to path atomically.
func WriteFile(path string, tensors []WriteTensor, metadata map[string]string) error {
	return atomicfile.Write(path, 0o644, func(w io.Writer) error {
		return Write(w, tensors, metadata)
	})
}
