package hub

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress draws one line per file being downloaded and an overall line
// (bytes, rate, ETA) on a terminal, redrawing in place. A nil *progress
// draws nothing, which is what --json and a non-terminal stderr get.
type progress struct {
	w     io.Writer
	now   func() time.Time
	label string

	mu      sync.Mutex
	start   time.Time
	total   int64 // bytes of every file whose size is known
	done    int64 // bytes on disk, resumed and already cached ones included
	fetched int64 // bytes transferred by this run: the rate's numerator
	files   int
	nDone   int
	active  []*fileProgress
	lines   int // lines drawn last time, to move back over
}

func newProgress(w io.Writer, now func() time.Time, label string, files int, total int64) *progress {
	if w == nil {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	return &progress{w: w, now: now, label: label, files: files, total: total, start: now()}
}

// fileProgress counts one file's bytes; it is the io.Writer the body is
// copied through.
type fileProgress struct {
	p       *progress
	name    string
	size    int64
	done    int64
	fetched int64
	start   time.Time
}

// file starts tracking a file of size bytes (-1 unknown).
func (p *progress) file(name string, size int64) *fileProgress {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fp := &fileProgress{p: p, name: name, size: size, start: p.now()}
	p.active = append(p.active, fp)
	return fp
}

// resumeAt says the file's download starts at offset have (0 after a
// restart).
func (fp *fileProgress) resumeAt(have int64) {
	if fp == nil {
		return
	}
	fp.p.mu.Lock()
	defer fp.p.mu.Unlock()
	fp.p.done += have - fp.done
	fp.done = have
}

func (fp *fileProgress) Write(b []byte) (int, error) {
	if fp == nil {
		return len(b), nil
	}
	n := int64(len(b))
	fp.p.mu.Lock()
	fp.done += n
	fp.fetched += n
	fp.p.done += n
	fp.p.fetched += n
	fp.p.mu.Unlock()
	return len(b), nil
}

// finish stops tracking the file; ok counts it as done.
func (fp *fileProgress) finish(ok bool) {
	if fp == nil {
		return
	}
	p := fp.p
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, a := range p.active {
		if a == fp {
			p.active = append(p.active[:i], p.active[i+1:]...)
			break
		}
	}
	if ok {
		p.nDone++
		if fp.size > fp.done {
			p.done += fp.size - fp.done
		}
	}
}

// cached counts a file that was already in the cache.
func (p *progress) cached(size int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nDone++
	if size > 0 {
		p.done += size
	}
}

// draw redraws every line in place.
func (p *progress) draw() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	if p.lines > 0 {
		fmt.Fprintf(&b, "\033[%dA", p.lines)
	}
	now := p.now()
	lines := 0
	for _, fp := range p.active {
		fmt.Fprintf(&b, "\r  %s\033[K\n", barLine(fp.name, fp.done, fp.size, fp.fetched, now.Sub(fp.start)))
		lines++
	}
	head := fmt.Sprintf("%s  %d/%d files", p.label, p.nDone, p.files)
	fmt.Fprintf(&b, "\r%s\033[K\n\033[J", barLine(head, p.done, p.total, p.fetched, now.Sub(p.start)))
	lines++
	p.lines = lines
	_, _ = io.WriteString(p.w, b.String())
}

// barLine is "name  1.20 GB / 4.90 GB  24%  85.3 MB/s  ETA 43s".
func barLine(name string, done, size, fetched int64, elapsed time.Duration) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteString("  ")
	b.WriteString(humanBytes(done))
	if size > 0 {
		fmt.Fprintf(&b, " / %s  %3d%%", humanBytes(size), min(100, done*100/size))
	}
	rate := 0.0
	if s := elapsed.Seconds(); s > 0.05 {
		rate = float64(fetched) / s
	}
	fmt.Fprintf(&b, "  %s/s", humanBytes(int64(rate)))
	if size > 0 && done < size && rate > 0 {
		b.WriteString("  ETA ")
		b.WriteString(eta(time.Duration(float64(size-done) / rate * float64(time.Second))))
	}
	return b.String()
}

// humanBytes is n in decimal units, as the rest of mach prints sizes.
func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

func eta(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d >= 100*time.Hour:
		return ">99h"
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

// run redraws every interval until stop is closed, then draws once more;
// done is closed when it has returned.
func (p *progress) run(interval time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	if p == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			p.draw()
			return
		case <-t.C:
			p.draw()
		}
	}
}
