package cpu

import (
	"sync"
	"sync/atomic"
)

// pool runs parallel loops on a fixed set of worker goroutines. The
// backend owns it: New starts the workers, Close stops them. The calling
// goroutine takes part in every loop as worker 0, so a pool of n workers
// starts n-1 goroutines.
type pool struct {
	n     int
	jobs  []chan *job
	wg    sync.WaitGroup
	close sync.Once
}

type job struct {
	n    int64
	next atomic.Int64
	fn   func(worker, i int)
	done sync.WaitGroup
}

func newPool(n int) *pool {
	p := &pool{n: max(n, 1)}
	for w := 1; w < p.n; w++ {
		ch := make(chan *job, 1)
		p.jobs = append(p.jobs, ch)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for j := range ch {
				j.work(w)
				j.done.Done()
			}
		}()
	}
	return p
}

func (j *job) work(worker int) {
	for {
		i := j.next.Add(1) - 1
		if i >= j.n {
			return
		}
		j.fn(worker, int(i))
	}
}

// run calls fn(worker, i) for every i in [0, n), spread over the workers,
// and returns when all calls have returned. worker is in [0, p.n) and
// identifies per-worker scratch space.
func (p *pool) run(n int, fn func(worker, i int)) {
	if n <= 0 {
		return
	}
	if n == 1 || p.n == 1 {
		for i := 0; i < n; i++ {
			fn(0, i)
		}
		return
	}
	j := &job{n: int64(n), fn: fn}
	helpers := min(p.n-1, n-1)
	j.done.Add(helpers)
	for w := 0; w < helpers; w++ {
		p.jobs[w] <- j
	}
	j.work(0)
	j.done.Wait()
}

func (p *pool) stop() {
	p.close.Do(func() {
		for _, ch := range p.jobs {
			close(ch)
		}
		p.wg.Wait()
	})
}
