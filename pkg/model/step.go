package model

import (
	"errors"
	"fmt"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/kvcache"
)

// Step is the geometry of one forward step: the batch's tokens laid out
// as consecutive rows, sequence after sequence.
type Step struct {
	Batch *Batch
	// Rows is the total number of tokens.
	Rows int
	// Start[i] is sequence i's first row; Start[len(Seqs)] = Rows.
	Start []int
	// Tokens and Pos hold every row's token id and position.
	Tokens []int32
	Pos    []int32
	// LogitRows lists the rows whose logits are wanted, in sequence order.
	LogitRows []int32
}

// ErrBatch is wrapped by errors about malformed batches.
var ErrBatch = errors.New("invalid batch")

// BeginStep validates batch, reserves room in every sequence's cache
// (kvcache.ErrCacheFull if one is full) and returns the step geometry.
// On error no cache is left mid-step. maxPos bounds positions (0: none).
func BeginStep(batch *Batch, vocab, maxPos int) (*Step, error) {
	if batch == nil || len(batch.Seqs) == 0 {
		return nil, fmt.Errorf("%w: no sequences", ErrBatch)
	}
	s := &Step{Batch: batch, Start: make([]int, 0, len(batch.Seqs)+1)}
	seen := map[kvcache.Cache]bool{}
	for i, q := range batch.Seqs {
		switch {
		case len(q.Tokens) == 0:
			return nil, fmt.Errorf("%w: sequence %d has no tokens", ErrBatch, i)
		case q.Cache == nil:
			return nil, fmt.Errorf("%w: sequence %d has no cache", ErrBatch, i)
		case seen[q.Cache]:
			return nil, fmt.Errorf("%w: sequence %d shares its cache with another", ErrBatch, i)
		}
		seen[q.Cache] = true
		for _, id := range q.Tokens {
			if id < 0 || int(id) >= vocab {
				return nil, fmt.Errorf("%w: token id %d outside the vocabulary of %d", ErrBatch, id, vocab)
			}
		}
		if maxPos > 0 && q.Cache.Len()+len(q.Tokens) > maxPos {
			return nil, fmt.Errorf("%w: sequence %d would reach position %d, beyond max_position_embeddings %d",
				kvcache.ErrCacheFull, i, q.Cache.Len()+len(q.Tokens), maxPos)
		}
	}
	for i, q := range batch.Seqs {
		if err := q.Cache.Begin(len(q.Tokens)); err != nil {
			for _, p := range batch.Seqs[:i] {
				_ = p.Cache.Truncate(p.Cache.Len()) // drop the pending step
			}
			return nil, fmt.Errorf("sequence %d: %w", i, err)
		}
		s.Start = append(s.Start, s.Rows)
		base := q.Cache.Len()
		for j, id := range q.Tokens {
			s.Tokens = append(s.Tokens, id)
			s.Pos = append(s.Pos, int32(base+j))
		}
		switch q.Logits {
		case LastLogits:
			s.LogitRows = append(s.LogitRows, int32(s.Rows+len(q.Tokens)-1))
		case AllLogits:
			for j := range q.Tokens {
				s.LogitRows = append(s.LogitRows, int32(s.Rows+j))
			}
		}
		s.Rows += len(q.Tokens)
	}
	s.Start = append(s.Start, s.Rows)
	return s, nil
}

// SeqRows returns sequence i's rows [a, e).
func (s *Step) SeqRows(i int) (a, e int) { return s.Start[i], s.Start[i+1] }

// SeqPos returns sequence i's positions.
func (s *Step) SeqPos(i int) []int32 { return s.Pos[s.Start[i]:s.Start[i+1]] }

// Commit appends the step's tokens to every cache.
func (s *Step) Commit() {
	for _, q := range s.Batch.Seqs {
		q.Cache.Commit()
	}
}

// End ends the step a forward pass ran with result err: it commits the
// step when err is nil; otherwise it drops it from every cache and syncs b,
// which drops an error the backend recorded for the failed step so that
// the next one does not report it. It returns err.
func (s *Step) End(b kernels.Backend, err error) error {
	if err != nil {
		s.Abort()
		_ = b.Sync()
		return err
	}
	s.Commit()
	return nil
}

// Abort drops the step from every cache.
func (s *Step) Abort() {
	for _, q := range s.Batch.Seqs {
		_ = q.Cache.Truncate(q.Cache.Len())
	}
}

// SplitLogits cuts the host logits of s.LogitRows (row-major, vocab wide)
// into the per-sequence Output.
func (s *Step) SplitLogits(host []float32, vocab int) *Output {
	out := &Output{Logits: make([][]float32, len(s.Batch.Seqs))}
	r := 0
	for i, q := range s.Batch.Seqs {
		n := 0
		switch q.Logits {
		case LastLogits:
			n = 1
		case AllLogits:
			n = len(q.Tokens)
		}
		if n > 0 {
			out.Logits[i] = host[r*vocab : (r+n)*vocab : (r+n)*vocab]
			r += n
		}
	}
	return out
}
