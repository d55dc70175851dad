package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/stretchr/testify/require"
)

func f32bytes(vs ...float32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], mathFloat32bits(v))
	}
	return b
}

func sample() []WriteTensor {
	return []WriteTensor{
		{Name: "b.weight", DType: F32, Shape: []int64{2, 2}, Data: f32bytes(1, 2, 3, 4)},
		{Name: "a.idx", DType: U8, Shape: []int64{3}, Data: []byte{7, 8, 9}},
		{Name: "c.half", DType: BF16, Shape: []int64{1}, Data: []byte{0x80, 0x3f}},
		{Name: "scalar", DType: I64, Shape: []int64{}, Data: make([]byte, 8)},
		{Name: "empty", DType: F32, Shape: []int64{0, 4}, Data: nil},
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "model.safetensors")
	require.NoError(t, WriteFile(p, sample(), map[string]string{"format": "pt"}))

	f, err := Open(p)
	require.NoError(t, err)
	defer f.Close()
	require.Equal(t, "pt", f.Header().Metadata["format"])
	require.Zero(t, f.Header().DataOffset%8, "data buffer is 8-byte aligned")
	for _, want := range sample() {
		got, err := f.Bytes(want.Name)
		require.NoError(t, err)
		require.Equal(t, len(want.Data), len(got), want.Name)
		if len(want.Data) > 0 {
			require.Equal(t, want.Data, got, want.Name)
		}
		ti, ok := f.Tensor(want.Name)
		require.True(t, ok)
		require.Equal(t, want.DType, ti.DType)
	}
	ti, _ := f.Tensor("b.weight")
	require.Zero(t, (f.Header().DataOffset+ti.Begin)%4, "f32 tensor is 4-byte aligned in the file")

	hs, err := ReadHeaders(dir)
	require.NoError(t, err)
	require.Equal(t, []string{"a.idx", "b.weight", "c.half", "empty", "scalar"}, hs.Names())

	s, err := OpenSet(dir)
	require.NoError(t, err)
	defer s.Close()
	b, info, err := s.Bytes("a.idx")
	require.NoError(t, err)
	require.Equal(t, []byte{7, 8, 9}, b)
	require.Equal(t, int64(3), info.NumElements())
	_, _, err = s.Bytes("nope")
	require.ErrorIs(t, err, ErrNotFound)
}

func TestShardedIndex(t *testing.T) {
	dir := t.TempDir()
	ts := sample()
	require.NoError(t, WriteFile(filepath.Join(dir, "model-00001-of-00002.safetensors"), ts[:2], nil))
	require.NoError(t, WriteFile(filepath.Join(dir, "model-00002-of-00002.safetensors"), ts[2:], nil))
	// A stray safetensors file must not be picked up when an index exists.
	require.NoError(t, WriteFile(filepath.Join(dir, "reference.safetensors"), ts[:1], nil))
	wm := map[string]string{}
	for _, x := range ts[:2] {
		wm[x.Name] = "model-00001-of-00002.safetensors"
	}
	for _, x := range ts[2:] {
		wm[x.Name] = "model-00002-of-00002.safetensors"
	}
	writeIndex(t, dir, wm)
	hs, err := ReadHeaders(dir)
	require.NoError(t, err)
	require.Len(t, hs.Files, 2)
	require.Len(t, hs.Names(), 5)

	wm["b.weight"] = "model-00002-of-00002.safetensors"
	writeIndex(t, dir, wm)
	_, err = ReadHeaders(dir)
	require.ErrorIs(t, err, ErrFormat)

	wm["b.weight"] = "../evil.safetensors"
	writeIndex(t, dir, wm)
	_, err = ReadHeaders(dir)
	require.ErrorContains(t, err, "not a file name")
	require.ErrorIs(t, err, fault.ErrIO)
}

func writeIndex(t *testing.T, dir string, wm map[string]string) {
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 1}, "weight_map": wm})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, IndexName), b, 0o644))
}

func rawFile(header string, data int) []byte {
	var b bytes.Buffer
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	b.Write(n[:])
	b.WriteString(header)
	b.Write(make([]byte, data))
	return b.Bytes()
}

func TestBadHeaders(t *testing.T) {
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"short", []byte{1, 2, 3}, "shorter than"},
		{"length beyond file", func() []byte { b := rawFile("{}", 0); b[0] = 200; return b }(), "larger than the file"},
		{"huge length", func() []byte {
			b := make([]byte, 16)
			binary.LittleEndian.PutUint64(b, 1<<40)
			return b
		}(), "limit"},
		{"not json", rawFile("[1]", 0), "not a JSON object"},
		{"bad json", rawFile(`{"a":`, 0), "invalid safetensors"},
		{"unknown dtype", rawFile(`{"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}}`, 1), "unknown dtype"},
		{"size mismatch", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 8), "needs 8 bytes"},
		{"out of range", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4), "outside"},
		{"negative", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}`, 4), "outside"},
		{"overlap", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, 8), "overlap"},
		{"duplicate", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2), "duplicate"},
		{"negative dim", rawFile(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`, 0), "bad dimension"},
		{"overflow", rawFile(`{"a":{"dtype":"F64","shape":[281474976710655,281474976710655],"data_offsets":[0,0]}}`, 0), "overflows"},
		{"half byte", rawFile(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}}`, 1), "whole number of bytes"},
		{"bad metadata", rawFile(`{"__metadata__":{"a":1}}`, 0), "__metadata__"},
		{"trailing", rawFile(`{} {}`, 0), "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadHeader(bytes.NewReader(tt.file), int64(len(tt.file)))
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestOpenErrorsAreIO(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "model.safetensors")
	require.NoError(t, os.WriteFile(p, []byte{1, 2}, 0o644))
	_, err := Open(p)
	require.ErrorIs(t, err, fault.ErrIO)
	require.ErrorIs(t, err, ErrFormat)
	_, err = Open(filepath.Join(dir, "missing.safetensors"))
	require.ErrorIs(t, err, fault.ErrIO)
	_, err = ReadHeaders(t.TempDir())
	require.ErrorIs(t, err, fault.ErrIO)
}

func FuzzReadHeader(f *testing.F) {
	var buf bytes.Buffer
	require.NoError(f, Write(&buf, sample(), map[string]string{"format": "mlx"}))
	f.Add(buf.Bytes())
	f.Add(rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, 8))
	f.Add(rawFile(`{"__metadata__":{"format":"pt"}}`, 0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, '{'})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadHeader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		// Whatever parses must describe bytes inside the file.
		for _, ti := range h.Tensors {
			if ti.Begin < 0 || ti.End < ti.Begin || h.DataOffset+ti.End > int64(len(b)) {
				t.Fatalf("tensor %q [%d,%d) escapes a %d-byte file", ti.Name, ti.Begin, ti.End, len(b))
			}
		}
	})
}
