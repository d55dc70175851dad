package sidecar_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/sidecar"
	"github.com/stretchr/testify/require"
)

func TestLayerFileNameWidth(t *testing.T) {
	tests := []struct {
		i, layers int
		want      string
	}{
		{0, 1, "layer_00.bin"},
		{7, 48, "layer_07.bin"},
		{99, 100, "layer_99.bin"},
		{7, 101, "layer_007.bin"},
		{120, 121, "layer_120.bin"},
		{5, 0, "layer_05.bin"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, sidecar.LayerFileNameWidth(tt.i, tt.layers), "%d of %d", tt.i, tt.layers)
	}
	require.Equal(t, sidecar.LayerFileName(3), sidecar.LayerFileNameWidth(3, 48))
}

func TestCRC32CFormat(t *testing.T) {
	// The Castagnoli check value of "123456789" (RFC 3720).
	require.Equal(t, uint32(0xe3069283), sidecar.CRC32C([]byte("123456789")))
	require.Equal(t, "e3069283", sidecar.FormatCRC32C(0xe3069283))
	v, err := sidecar.ParseCRC32C("E3069283")
	require.NoError(t, err)
	require.Equal(t, uint32(0xe3069283), v)
	for _, bad := range []string{"", "e306928", "e30692830", "xyz01234"} {
		_, err := sidecar.ParseCRC32C(bad)
		require.Error(t, err, bad)
	}
}

// withChecksums writes random layer files for valid() and records their
// per-expert checksums and sha256.
func withChecksums(t *testing.T, dir string) *sidecar.Layout {
	t.Helper()
	l := valid()
	l.Checksum = sidecar.ChecksumCRC32C
	// Leave padding after each payload.
	l.ExpertStride += l.Alignment
	for i := range l.Layers {
		l.Layers[i].Size = int64(l.LayerExperts(l.Layers[i])) * l.ExpertStride
	}
	rng := rand.New(rand.NewPCG(1, 2))
	payload := l.PayloadSize()
	for i := range l.Layers {
		ly := &l.Layers[i]
		data := make([]byte, ly.Size)
		for e := 0; e < l.LayerExperts(*ly); e++ {
			off := int64(e) * l.ExpertStride
			for j := off; j < off+payload; j++ {
				data[j] = byte(rng.Uint32())
			}
			ly.Experts = append(ly.Experts, sidecar.Expert{Offset: off, Size: payload, CRC32C: sidecar.FormatCRC32C(sidecar.CRC32C(data[off : off+payload]))})
		}
		s := sha256.Sum256(data)
		ly.SHA256 = hex.EncodeToString(s[:])
		require.NoError(t, os.WriteFile(filepath.Join(dir, ly.File), data, 0o644))
	}
	require.NoError(t, l.WriteFile(dir))
	return l
}

func TestVerifyChecksums(t *testing.T) {
	dir := t.TempDir()
	withChecksums(t, dir)
	l, err := sidecar.Load(dir)
	require.NoError(t, err)
	require.True(t, l.HasChecksums())
	var last, total int64
	require.NoError(t, l.VerifyChecksums(context.Background(), dir, func(d, tot int64) { last, total = d, tot }))
	require.Equal(t, l.TotalBytes(), last)
	require.Equal(t, l.TotalBytes(), total)

	// Flip one payload byte of layer 1, expert 2.
	p := filepath.Join(dir, "layer_01.bin")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	data[2*l.ExpertStride+5] ^= 0x40
	require.NoError(t, os.WriteFile(p, data, 0o644))
	err = l.VerifyChecksums(context.Background(), dir, nil)
	var ce *sidecar.CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, 1, ce.Layer)
	require.Equal(t, 2, ce.Expert)
	require.ErrorIs(t, err, sidecar.ErrCorrupt)
	require.ErrorIs(t, err, fault.ErrIO)
	require.Contains(t, err.Error(), "layer 1 expert 2")
	require.Contains(t, err.Error(), "layer_01.bin")

	// Padding is not covered by the expert checksums, but by the sha256.
	data[2*l.ExpertStride+5] ^= 0x40
	data[len(data)-1] = 1
	require.NoError(t, os.WriteFile(p, data, 0o644))
	err = l.VerifyChecksums(context.Background(), dir, nil)
	require.ErrorIs(t, err, sidecar.ErrCorrupt)
	require.Contains(t, err.Error(), "sha256")

	// Cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, l.VerifyChecksums(ctx, dir, nil), context.Canceled)
}

func TestVerifyChecksumsNeedsChecksums(t *testing.T) {
	dir := t.TempDir()
	l := valid()
	require.NoError(t, l.WriteFile(dir))
	writeLayers(t, dir, l)
	require.False(t, l.HasChecksums())
	err := l.VerifyChecksums(context.Background(), dir, nil)
	require.ErrorIs(t, err, sidecar.ErrNoChecksums)
	require.ErrorIs(t, err, fault.ErrIO)
}

func TestCheckExpert(t *testing.T) {
	dir := t.TempDir()
	l := withChecksums(t, dir)
	ly, _ := l.Layer(0)
	data, err := os.ReadFile(filepath.Join(dir, ly.File))
	require.NoError(t, err)
	n := l.PayloadSize()
	require.NoError(t, l.CheckExpert("x", ly, 1, data[l.ExpertStride:l.ExpertStride+n]))
	require.ErrorIs(t, l.CheckExpert("x", ly, 0, data[l.ExpertStride:l.ExpertStride+n]), sidecar.ErrCorrupt)
	require.Error(t, l.CheckExpert("x", ly, 1, data[:3]))
}

func TestParseExpertEntries(t *testing.T) {
	dir := t.TempDir()
	good := withChecksums(t, dir)
	tests := []struct {
		name   string
		mutate func(*sidecar.Layout)
		want   string
	}{
		{"algorithm", func(l *sidecar.Layout) { l.Checksum = "md5" }, "checksum algorithm"},
		{"no algorithm", func(l *sidecar.Layout) { l.Checksum = "" }, "checksum algorithm is \"\""},
		{"count", func(l *sidecar.Layout) { l.Layers[0].Experts = l.Layers[0].Experts[:3] }, "3 expert entries for 4 experts"},
		{"offset", func(l *sidecar.Layout) { l.Layers[0].Experts[1].Offset++ }, "offset"},
		{"size small", func(l *sidecar.Layout) { l.Layers[0].Experts[1].Size = 1 }, "size 1 outside"},
		{"size big", func(l *sidecar.Layout) { l.Layers[0].Experts[1].Size = l.ExpertStride + 1 }, "outside"},
		{"crc", func(l *sidecar.Layout) { l.Layers[0].Experts[1].CRC32C = "nothex!!" }, "crc32c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := *good
			l.Layers = append([]sidecar.Layer(nil), good.Layers...)
			for i := range l.Layers {
				l.Layers[i].Experts = append([]sidecar.Expert(nil), good.Layers[i].Experts...)
			}
			tt.mutate(&l)
			_, err := sidecar.Parse(marshal(t, &l))
			require.ErrorIs(t, err, sidecar.ErrInvalid)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}
