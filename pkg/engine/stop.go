package engine

import "strings"

// stopper streams text while watching for stop strings: it holds back any
// suffix that could still become a stop string, and cuts the text at the
// earliest one found.
type stopper struct {
	stops   []string
	pending string
}

// push adds a text delta and returns what may be shown now, and whether a
// stop string was reached (the text before it is returned; the rest is
// dropped).
func (s *stopper) push(delta string) (string, bool) {
	s.pending += delta
	best := -1
	for _, st := range s.stops {
		if st == "" {
			continue
		}
		if i := strings.Index(s.pending, st); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	if best >= 0 {
		out := s.pending[:best]
		s.pending = ""
		return out, true
	}
	keep := 0
	for _, st := range s.stops {
		for k := min(len(st)-1, len(s.pending)); k > keep; k-- {
			if strings.HasSuffix(s.pending, st[:k]) {
				keep = k
				break
			}
		}
	}
	out := s.pending[:len(s.pending)-keep]
	s.pending = s.pending[len(s.pending)-keep:]
	return out, false
}

// flush returns the held-back text at the end of generation.
func (s *stopper) flush(delta string) string {
	out, hit := s.push(delta)
	if hit {
		return out
	}
	out += s.pending
	s.pending = ""
	return out
}
