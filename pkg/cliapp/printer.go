package cliapp

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/jedib0t/go-pretty/v6/table"
	"github.com/jedib0t/go-pretty/v6/text"
)

// WriteJSON writes v as indented JSON followed by a newline.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// plainStyle renders tables the way the seed documents them: columns
// separated by two spaces, a dashed rule under the header, no borders.
var plainStyle = table.Style{
	Name: "mach",
	Box: table.BoxStyle{
		MiddleHorizontal: "-",
		MiddleSeparator:  "  ",
		MiddleVertical:   "  ",
		PaddingLeft:      "",
		PaddingRight:     "",
	},
	Format: table.FormatOptions{
		Header: text.FormatDefault,
		Row:    text.FormatDefault,
		Footer: text.FormatDefault,
	},
	Options: table.Options{
		DrawBorder:      false,
		SeparateColumns: true,
		SeparateHeader:  true,
		SeparateRows:    false,
		SeparateFooter:  false,
	},
}

// WriteTable renders rows under header in mach's plain table style.
// Trailing spaces are trimmed from every line.
func WriteTable(w io.Writer, header []string, rows [][]string) error {
	t := table.NewWriter()
	t.SetStyle(plainStyle)
	h := make(table.Row, len(header))
	for i, c := range header {
		h[i] = c
	}
	t.AppendHeader(h)
	for _, r := range rows {
		row := make(table.Row, len(r))
		for i, c := range r {
			row[i] = c
		}
		t.AppendRow(row)
	}
	_, err := io.WriteString(w, trimLines(t.Render())+"\n")
	return err
}

func trimLines(s string) string {
	out := make([]byte, 0, len(s))
	lineStart := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '\n' {
			line := s[lineStart:i]
			end := len(line)
			for end > 0 && line[end-1] == ' ' {
				end--
			}
			out = append(out, line[:end]...)
			if i < len(s) {
				out = append(out, '\n')
			}
			lineStart = i + 1
		}
	}
	return string(out)
}

// YesNo renders a boolean as yes/no for tables.
func YesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Size renders a byte count in decimal units as the seed's reports do
// (14.2GB, 512.0MB, 3.1KB, 12B).
func Size(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fGB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1fMB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fKB", float64(n)/1e3)
	}
	return fmt.Sprintf("%dB", n)
}
