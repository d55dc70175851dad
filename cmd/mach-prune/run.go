package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/prune"
	"github.com/maniac-ai/mach/pkg/pruneplan"
	"github.com/maniac-ai/mach/pkg/registry"
)

type options struct {
	Source, Output    string
	Plan, CandidateID string
	Keep              string
	Force             bool
	MaxShardSize      string
	DryRun, JSON      bool
}

func run(ctx context.Context, reg *registry.Registry, o options, stdout, stderr io.Writer) error {
	if o.Source == "" {
		return cliapp.Usagef("missing --source: the checkpoint directory to prune")
	}
	if o.Output == "" {
		return cliapp.Usagef("missing --output: the directory to write")
	}
	shard, err := parseSize(o.MaxShardSize)
	if err != nil {
		return cliapp.Usagef("--max-shard-size %q: %v", o.MaxShardSize, err)
	}
	popts := prune.Options{Source: o.Source, Output: o.Output, Registry: reg, MaxShardSize: shard, Force: o.Force, DryRun: o.DryRun}
	switch {
	case o.Keep != "" && o.Keep != "all":
		return cliapp.Usagef("--keep %q: the only value is 'all' (a subset of experts comes from --plan)", o.Keep)
	case o.Keep != "" && o.Plan != "":
		return cliapp.Usagef("--keep all and --plan exclude each other")
	case o.Plan == "" && o.CandidateID != "":
		return cliapp.Usagef("--candidate-id %q needs --plan, the file that defines it", o.CandidateID)
	case o.Plan != "":
		plan, err := pruneplan.ReadFile(o.Plan)
		if err != nil {
			return err
		}
		switch {
		case o.CandidateID != "":
			if popts.Candidate, err = plan.Find(o.CandidateID); err != nil {
				return err
			}
		case len(plan.Candidates) == 1:
			popts.Candidate = &plan.Candidates[0]
		default:
			ids := plan.IDs()
			if len(ids) > 10 {
				ids = append(ids[:10], fmt.Sprintf("… (%d more)", len(plan.Candidates)-10))
			}
			return cliapp.Usagef("missing --candidate-id: %s has %d candidates: %s", o.Plan, len(plan.Candidates), strings.Join(ids, ", "))
		}
	}
	// Progress goes to stderr, so it never mixes with --json on stdout.
	p := &progress{w: stderr}
	if isTerminal(stderr) {
		popts.Progress = p.update
	}
	sum, err := prune.Run(ctx, popts)
	// Clear the progress line before anything else is written: stdout and
	// stderr are often the same terminal.
	p.finish()
	if err != nil {
		return err
	}
	if o.JSON {
		return cliapp.WriteJSON(stdout, sum)
	}
	return writeSummary(stdout, sum)
}

// parseSize reads a byte count: a plain integer or a number with a unit
// (KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		// Binary units come first in the list, so "GiB" never reads as "B".
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v*mult < 1 || v*mult > 1<<50 {
		return 0, fmt.Errorf("want a positive size such as 5GB, 500MB, 2GiB or a number of bytes")
	}
	return int64(v * mult), nil
}

func writeSummary(w io.Writer, s *prune.Summary) error {
	kept := ""
	minK, maxK := s.Layers[0].Kept, s.Layers[0].Kept
	for _, l := range s.Layers {
		minK, maxK = min(minK, l.Kept), max(maxK, l.Kept)
	}
	if minK == maxK {
		kept = fmt.Sprintf("kept %d of %d in each of %d MoE layers", maxK, s.SourceExperts, len(s.Layers))
	} else {
		kept = fmt.Sprintf("kept %d–%d of %d per MoE layer (%d layers; num_experts_per_layer in config.json)", minK, maxK, s.SourceExperts, len(s.Layers))
	}
	if len(s.MTPLayers) > 0 {
		kept += "; MTP layer(s) keep all"
	}
	candidate := "none: every expert kept (layout conversion)"
	if s.CandidateID != nil {
		candidate = *s.CandidateID
	}
	shards := fmt.Sprintf("%d in %d shard(s)", s.Tensors, len(s.Shards))
	copied := "none"
	if len(s.CopiedFiles) > 0 {
		copied = strings.Join(s.CopiedFiles, ", ")
	}
	lines := [][2]string{
		{"source", fmt.Sprintf("%s (%s, %s, %d routed experts per MoE layer, top-%d)", s.Source, s.ModelType, s.SourceLayout, s.SourceExperts, s.TopK)},
		{"output", fmt.Sprintf("%s (%s)", s.Output, s.Layout)},
		{"candidate", candidate},
		{"experts", kept},
		{"tensors", shards},
		{"bytes", fmt.Sprintf("%s → %s (routed experts %s → %s)", cliapp.Size(s.BytesBefore), cliapp.Size(s.BytesAfter), cliapp.Size(s.ExpertBytesBefore), cliapp.Size(s.ExpertBytesAfter))},
		{"copied", copied},
	}
	for _, l := range lines {
		if _, err := fmt.Fprintf(w, "%-10s %s\n", l[0]+":", l[1]); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	rows := make([][]string, len(s.Layers))
	for i, l := range s.Layers {
		rows[i] = []string{strconv.Itoa(l.Layer), strconv.Itoa(l.Source), strconv.Itoa(l.Kept), strconv.Itoa(l.Removed)}
	}
	if err := cliapp.WriteTable(w, []string{"layer", "source", "kept", "removed"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, n := range s.Notes {
		fmt.Fprintf(w, "%-10s %s\n", "note:", n)
	}
	if s.DryRun {
		_, err := fmt.Fprintf(w, "%-10s nothing written (--dry-run)\n", "dry run:")
		return err
	}
	_, err := fmt.Fprintf(w, "%-10s mach check %s\n", "next:", s.Output)
	return err
}

// progress draws one self-overwriting line on a terminal, at most every
// 200 ms.
type progress struct {
	w     io.Writer
	last  time.Time
	drawn bool
}

func (p *progress) update(pr prune.Progress) {
	if now := time.Now(); now.Sub(p.last) >= 200*time.Millisecond || pr.Done == pr.Total {
		p.last = now
		pct := 100.0
		if pr.Total > 0 {
			pct = 100 * float64(pr.Done) / float64(pr.Total)
		}
		fmt.Fprintf(p.w, "\r\033[Kmach-prune: shard %d/%d  %5.1f%%  %s / %s", pr.Shard, pr.Shards, pct, cliapp.Size(pr.Done), cliapp.Size(pr.Total))
		p.drawn = true
	}
}

func (p *progress) finish() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
