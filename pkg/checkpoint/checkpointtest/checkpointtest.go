// Package checkpointtest writes synthetic checkpoints for tests: real
// safetensors headers over zero-filled (sparse) data, so a test can describe
// a 100-tensor checkpoint by names, dtypes and shapes alone. Only tests
// import it.
package checkpointtest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/safetensors"
)

// Tensor is one tensor to write; its data is zeros.
type Tensor struct {
	Name  string
	DType string
	Shape []int64
}

// T is a shorthand for a Tensor.
func T(name, dtype string, shape ...int64) Tensor {
	return Tensor{Name: name, DType: dtype, Shape: shape}
}

type entry struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// WriteSafetensors writes a safetensors file holding tensors (zeros), laid
// out back to back in the given order.
func WriteSafetensors(t testing.TB, path string, tensors []Tensor) {
	t.Helper()
	hdr := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var off int64
	for _, x := range tensors {
		n := int64(safetensors.DType(x.DType).Bits())
		if n == 0 {
			t.Fatalf("checkpointtest: %s: unknown dtype %s", x.Name, x.DType)
		}
		for _, d := range x.Shape {
			n *= d
		}
		n /= 8
		shape := x.Shape
		if shape == nil {
			shape = []int64{}
		}
		hdr[x.Name] = entry{DType: x.DType, Shape: shape, DataOffsets: [2]int64{off, off + n}}
		off += n
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	writeRaw(t, path, js, off)
}

// writeRaw writes the 8-byte length, the header and dataSize zero bytes.
func writeRaw(t testing.TB, path string, header []byte, dataSize int64) {
	t.Helper()
	var buf bytes.Buffer
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	buf.Write(n[:])
	buf.Write(header)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	// Truncate extends with zeros without writing them (sparse).
	if err := f.Truncate(int64(buf.Len()) + dataSize); err != nil {
		t.Fatal(err)
	}
}

// WriteFile writes content to dir/name, creating directories.
func WriteFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Materialize copies a fixture directory into a temporary directory,
// turning every NAME.header.json (a safetensors JSON header, as the real
// file has it) into the safetensors file NAME with zero-filled data. It
// returns the new directory.
func Materialize(t testing.TB, fixture string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(fixture))
	err := filepath.WalkDir(fixture, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(fixture, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if name, ok := strings.CutSuffix(rel, ".header.json"); ok {
			var h map[string]json.RawMessage
			if err := json.Unmarshal(b, &h); err != nil {
				return err
			}
			var end int64
			for k, v := range h {
				if k == "__metadata__" {
					continue
				}
				var e entry
				if err := json.Unmarshal(v, &e); err != nil {
					return err
				}
				end = max(end, e.DataOffsets[1])
			}
			writeRaw(t, filepath.Join(dst, name), bytes.TrimSpace(b), end)
			return nil
		}
		WriteFile(t, dst, filepath.ToSlash(rel), string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
