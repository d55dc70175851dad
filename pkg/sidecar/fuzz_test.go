package sidecar_test

import (
	"testing"

	"github.com/maniac-ai/mach/pkg/sidecar"
)

// FuzzParse: layout.json comes from disk or a hub; any bytes must give a
// validated layout or an error, never a panic.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := sidecar.Parse(data)
		if err != nil {
			return
		}
		var total int64
		for _, ly := range l.Layers {
			if ly.Size != int64(l.LayerExperts(ly))*l.ExpertStride {
				t.Fatalf("layer %d size %d", ly.Index, ly.Size)
			}
			total += ly.Size
			if _, ok := l.Layer(ly.Index); !ok {
				t.Fatalf("layer %d not found", ly.Index)
			}
		}
		if total != l.TotalBytes() {
			t.Fatal("TotalBytes disagrees")
		}
		for _, ly := range l.Layers {
			if len(ly.Experts) == 0 {
				continue
			}
			if l.Checksum != sidecar.ChecksumCRC32C || len(ly.Experts) != l.LayerExperts(ly) {
				t.Fatalf("layer %d: %d expert entries accepted", ly.Index, len(ly.Experts))
			}
			for e, x := range ly.Experts {
				if x.Offset != int64(e)*l.ExpertStride || x.Size < l.PayloadSize() || x.Size > l.ExpertStride {
					t.Fatalf("layer %d expert %d: entry %+v accepted", ly.Index, e, x)
				}
				if _, err := sidecar.ParseCRC32C(x.CRC32C); err != nil {
					t.Fatalf("layer %d expert %d: %v", ly.Index, e, err)
				}
			}
		}
		for _, c := range l.Components {
			if c.Offset < 0 || c.Offset+c.Size > l.ExpertStride {
				t.Fatalf("component %q outside the stride", c.Name)
			}
		}
		if _, err := l.Marshal(); err != nil {
			t.Fatalf("a parsed layout does not marshal: %v", err)
		}
	})
}
