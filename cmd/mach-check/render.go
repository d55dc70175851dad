package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/maniac-ai/mach/pkg/capability"
	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/preflight"
)

// writeReport prints the human report in the seed's shape.
func writeReport(w io.Writer, r preflight.Report) error {
	in := r.Inspect
	layout := string(r.Layout)
	switch {
	case in.Remote && r.Layout == checkpoint.Engine:
		layout += " (declared by the hub's expert_sidecar/layout.json; weights not inspected)"
	case in.Remote:
		layout += " (config only; weights not inspected)"
	case !in.WeightsInspected:
		layout += " (no safetensors weights found)"
	}
	sidecar := "no"
	switch s := in.Sidecar; {
	case s.Valid && !s.Verified:
		sidecar = "yes (layout.json only; layer files not checked)"
	case s.Valid && s.Checksummed:
		sidecar = "yes (checksums verified)"
	case s.Valid:
		sidecar = "yes"
	case s.Present:
		sidecar = "invalid"
	}
	draft := "none"
	if d := in.Draft; d.Dir != "" {
		draft = d.Dir
		if !d.Usable {
			draft += " (unusable)"
		}
	}
	lines := [][2]string{
		{"model", r.Model},
		{"model_type", r.ModelType},
		{"supported", cliapp.YesNo(r.Supported)},
		{"layout", layout},
		{"quant", in.Quant.String()},
		{"experts", expertsLine(r.Experts)},
		{"artifacts", fmt.Sprintf("sidecar=%s, draft_dir=%s", sidecar, draft)},
		{"memory", memoryLine(r.Mem)},
	}
	for _, l := range lines {
		if _, err := fmt.Fprintf(w, "%-11s %s\n", l[0]+":", l[1]); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	rows := make([][]string, 0, len(r.PathOrder))
	for _, p := range r.PathOrder {
		rows = append(rows, []string{string(p.Path), string(p.Status), p.Reason})
	}
	if err := cliapp.WriteTable(w, []string{"path", "status", "reason"}, rows); err != nil {
		return err
	}
	serve := "none (not servable by this build)"
	if r.ServeCommand != nil {
		serve = *r.ServeCommand
	} else if r.Paths[capability.OpenAIHTTP].Status == capability.NeedsArtifact {
		serve = "none until the missing artifact exists"
	}
	_, err := fmt.Fprintf(w, "\n%-11s %s\n%-11s %s\n", "verdict:", r.Verdict, "serve with:", serve)
	return err
}

// expertsLine renders the routed-expert count: "8 routed per MoE layer,
// top-2", or the per-layer counts of a checkpoint pruned non-uniformly.
func expertsLine(e preflight.ExpertsReport) string {
	if e.Routed == nil {
		return "unknown"
	}
	s := fmt.Sprintf("%d routed per MoE layer", *e.Routed)
	if len(e.PerLayer) > 0 {
		layers := make([]int, 0, len(e.PerLayer))
		lo := *e.Routed
		for k, n := range e.PerLayer {
			l, _ := strconv.Atoi(k)
			layers = append(layers, l)
			lo = min(lo, n)
		}
		slices.Sort(layers)
		parts := make([]string, 0, len(layers))
		for i, l := range layers {
			if i == 8 {
				parts = append(parts, fmt.Sprintf("… %d more", len(layers)-i))
				break
			}
			parts = append(parts, fmt.Sprintf("%d: %d", l, e.PerLayer[strconv.Itoa(l)]))
		}
		s = fmt.Sprintf("%d–%d routed per MoE layer (layer %s)", lo, *e.Routed, strings.Join(parts, ", "))
	}
	if e.TopK != nil {
		s += fmt.Sprintf(", top-%d", *e.TopK)
	}
	return s
}

func memoryLine(m preflight.Memory) string {
	var parts []string
	parts = append(parts, "verdict="+m.Verdict)
	if m.ExpertsBytes > 0 {
		parts = append(parts, "experts="+cliapp.Size(m.ExpertsBytes))
	}
	if m.NonExpertBytes > 0 {
		parts = append(parts, "non_experts="+cliapp.Size(m.NonExpertBytes))
	}
	if m.KVBytes > 0 {
		parts = append(parts, fmt.Sprintf("kv@%d=%s", m.ContextLength, cliapp.Size(m.KVBytes)))
	}
	if m.ExpertCacheBytes > 0 {
		parts = append(parts, "expert_cache="+cliapp.Size(m.ExpertCacheBytes))
	}
	if m.WorkingSetBytes > 0 {
		parts = append(parts, "working_set="+cliapp.Size(m.WorkingSetBytes))
	}
	if m.AvailableBytes > 0 {
		parts = append(parts, "available="+cliapp.Size(m.AvailableBytes))
	}
	s := strings.Join(parts, ", ")
	switch {
	case m.Verdict == preflight.Unknown && m.Note != "":
		s += " (" + m.Note + ")"
	case m.FromConfig:
		s += " (weights estimated from config.json)"
	}
	return s
}

// matrixJSON is --all-archs --json.
type matrixJSON struct {
	Paths []capability.Path                                `json:"paths"`
	Archs map[string]map[capability.Path]capability.Result `json:"archs"`
}

// writeMatrix prints the path × architecture matrix and, below it, why
// each cell that is not ok has its status.
func writeMatrix(w io.Writer, b preflight.Build, asJSON bool) error {
	m := b.Matrix()
	if asJSON {
		return cliapp.WriteJSON(w, matrixJSON{Paths: capability.Paths(), Archs: m})
	}
	archs := b.Registry.Names()
	header := append([]string{"path"}, archs...)
	var rows [][]string
	type group struct {
		reason string
		status capability.Status
		cells  [][2]string // arch, path
	}
	var groups []*group
	byReason := map[string]*group{}
	for _, p := range capability.Paths() {
		row := []string{string(p)}
		for _, a := range archs {
			res := m[a][p]
			row = append(row, string(res.Status))
			if res.Status == capability.OK {
				continue
			}
			key := string(res.Status) + "\x00" + res.Reason
			g := byReason[key]
			if g == nil {
				g = &group{reason: res.Reason, status: res.Status}
				byReason[key] = g
				groups = append(groups, g)
			}
			g.cells = append(g.cells, [2]string{a, string(p)})
		}
		rows = append(rows, row)
	}
	if err := cliapp.WriteTable(w, header, rows); err != nil {
		return err
	}
	if len(groups) == 0 {
		return nil
	}
	if _, err := fmt.Fprintf(w, "\nwhy (this build):\n"); err != nil {
		return err
	}
	for _, g := range groups {
		if _, err := fmt.Fprintf(w, "  %s: %s\n      %s\n", g.status, g.reason, describeCells(g.cells)); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\nStatuses are for this build; mach check MODEL resolves the checkpoint-dependent ones.\n")
	return err
}

// describeCells names a set of (arch, path) cells compactly: "arch: p1, p2"
// when one arch, "a1, a2: path" when one path, else "a1/p1, a2/p2".
func describeCells(cells [][2]string) string {
	var archs, paths []string
	for _, c := range cells {
		if !slices.Contains(archs, c[0]) {
			archs = append(archs, c[0])
		}
		if !slices.Contains(paths, c[1]) {
			paths = append(paths, c[1])
		}
	}
	switch {
	case len(archs) == 1:
		return archs[0] + ": " + strings.Join(paths, ", ")
	case len(paths) == 1:
		return strings.Join(archs, ", ") + ": " + paths[0]
	case len(archs)*len(paths) == len(cells):
		return strings.Join(archs, ", ") + ": " + strings.Join(paths, ", ")
	}
	items := make([]string, len(cells))
	for i, c := range cells {
		items[i] = c[0] + "/" + c[1]
	}
	return strings.Join(items, ", ")
}
