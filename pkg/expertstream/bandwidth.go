package expertstream

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/sidecar"
)

// Bandwidth is what MeasureReadBandwidth saw.
type Bandwidth struct {
	// BytesPerSecond is the aggregate read rate.
	BytesPerSecond float64
	Reads          int64
	Bytes          int64
	Elapsed        time.Duration
	// MeanLatency is the mean time of one slab read.
	MeanLatency time.Duration
	DirectIO    bool
}

// MeasureReadBandwidth reads whole expert slabs of the sidecar in dir at
// random, the way the store reads them (same files, direct I/O, slab size
// and readers concurrent reads), for about d, and returns the rate: the
// disk's limit for expert streaming.
func MeasureReadBandwidth(ctx context.Context, dir string, d time.Duration, readers int, bufferedIO bool) (Bandwidth, error) {
	l, err := sidecar.Load(dir)
	if err != nil {
		return Bandwidth{}, err
	}
	if readers <= 0 {
		readers = DefaultReaders
	}
	direct := !bufferedIO && l.ExpertStride%sidecar.DirectIOAlignment == 0
	files := make([]*layerFile, len(l.Layers))
	defer func() {
		for _, f := range files {
			if f != nil {
				_ = f.close()
			}
		}
	}()
	for i, ly := range l.Layers {
		if files[i], err = openLayer(filepath.Join(dir, ly.File), direct); err != nil {
			return Bandwidth{}, fault.Mark(err, fault.ErrIO)
		}
	}
	a, err := newArena(int64(readers) * l.ExpertStride)
	if err != nil {
		return Bandwidth{}, err
	}
	defer a.free()
	var (
		mu      sync.Mutex
		res     Bandwidth
		lat     time.Duration
		firstEr error
		wg      sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for r := 0; r < readers; r++ {
		buf := a.bytes()[int64(r)*l.ExpertStride : int64(r+1)*l.ExpertStride]
		rng := rand.New(rand.NewPCG(uint64(r), 0xb4))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				i := rng.IntN(len(l.Layers))
				e := rng.IntN(l.LayerExperts(l.Layers[i]))
				t0 := time.Now()
				err := files[i].readAt(buf, int64(e)*l.ExpertStride)
				dt := time.Since(t0)
				mu.Lock()
				if err != nil && firstEr == nil {
					firstEr = err
				}
				res.Reads++
				res.Bytes += int64(len(buf))
				lat += dt
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstEr != nil {
		return Bandwidth{}, fault.Mark(fmt.Errorf("measure read bandwidth: %w", firstEr), fault.ErrIO)
	}
	if err := ctx.Err(); err != nil {
		return Bandwidth{}, err
	}
	res.Elapsed = time.Since(start)
	res.BytesPerSecond = float64(res.Bytes) / res.Elapsed.Seconds()
	if res.Reads > 0 {
		res.MeanLatency = lat / time.Duration(res.Reads)
	}
	res.DirectIO = true
	for _, f := range files {
		res.DirectIO = res.DirectIO && f.isDirect()
	}
	return res, nil
}
