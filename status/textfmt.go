package status

import (
	"strings"
	"unicode/utf8"
)

// column is one column of an aligned table.
type column struct {
	head  string
	short string // a shorter heading used when the table must be narrowed
	right bool   // right-aligned (numbers)
	// flex columns may be narrowed to fit the width; their cells then wrap
	// onto more lines (at a comma or space where possible).
	flex bool
	min  int
}

// width is the runes of s: its bytes when it is ASCII (most cells are).
func width(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return utf8.RuneCountInString(s)
		}
	}
	return len(s)
}

// layout computes column widths for cells so that indent plus the columns
// and gaps of 2 fit into total; flex columns give up width first, the
// widest first, down to their minimum. It also returns the headings to
// use: the short ones when the long ones do not fit.
func layout(cols []column, rows [][]string, indent, total int) ([]int, []string) {
	heads := make([]string, len(cols))
	for i, c := range cols {
		heads[i] = c.head
	}
	w := natural(heads, rows)
	if sumWidths(w, indent) > total {
		for i, c := range cols {
			if c.short != "" {
				heads[i] = c.short
			}
		}
		w = natural(heads, rows)
	}
	for sumWidths(w, indent) > total {
		best := -1
		for i, c := range cols {
			lo := max(c.min, width(heads[i]), 4)
			if c.flex && w[i] > lo && (best < 0 || w[i] > w[best]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		w[best]--
	}
	return w, heads
}

func sumWidths(w []int, indent int) int {
	s := indent + 2*(len(w)-1)
	for _, x := range w {
		s += x
	}
	return s
}

func natural(heads []string, rows [][]string) []int {
	w := make([]int, len(heads))
	for i, h := range heads {
		w[i] = width(h)
		for _, r := range rows {
			if i < len(r) {
				w[i] = max(w[i], width(r[i]))
			}
		}
	}
	return w
}

// wrapText splits s into lines of at most w runes, breaking after a comma
// or at a space where there is one, else anywhere.
func wrapText(s string, w int) []string {
	if w <= 0 || width(s) <= w {
		return []string{s}
	}
	var out []string
	for width(s) > w {
		r := []rune(s)
		cut := -1
		for i := w; i > 0; i-- {
			if r[i-1] == ',' || r[i-1] == ' ' {
				cut = i
				break
			}
		}
		if cut < 0 {
			cut = w
		}
		out = append(out, strings.TrimRight(string(r[:cut]), " "))
		s = strings.TrimLeft(string(r[cut:]), " ")
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}

// pad fills s to w runes.
func pad(s string, w int, right bool) string {
	n := w - width(s)
	if n <= 0 {
		return s
	}
	if right {
		return strings.Repeat(" ", n) + s
	}
	return s + strings.Repeat(" ", n)
}

// spaces is padding to slice from.
var spaces = strings.Repeat(" ", 256)

// blank returns n spaces.
func blank(n int) string {
	if n <= len(spaces) {
		return spaces[:n]
	}
	return strings.Repeat(" ", n)
}

// writeRow writes one table row, wrapping cells that are wider than their
// column onto continuation lines. paint colours a cell after padding (the
// padding is measured without colour codes); nil paints nothing.
func writeRow(sb *strings.Builder, cols []column, w []int, cells []string, indent int, paint func(col int, padded string) string) {
	n := 1
	for i := range cols {
		if i < len(cells) && width(cells[i]) > w[i] {
			n = max(n, len(wrapText(cells[i], w[i])))
		}
	}
	var lines [][]string
	if n > 1 {
		lines = make([][]string, len(cols))
		for i := range cols {
			if i < len(cells) {
				lines[i] = wrapText(cells[i], w[i])
			}
		}
	}
	line := make([]byte, 0, 128)
	for l := 0; l < n; l++ {
		line = append(line[:0], blank(indent)...)
		for i, c := range cols {
			s := ""
			switch {
			case lines != nil:
				if l < len(lines[i]) {
					s = lines[i][l]
				}
			case i < len(cells):
				s = cells[i]
			}
			gap := w[i] - width(s)
			last := i == len(cols)-1
			p := s
			if paint != nil && s != "" {
				p = paint(i, s)
			}
			if c.right {
				line = append(line, blank(max(gap, 0))...)
				line = append(line, p...)
			} else {
				line = append(line, p...)
				if !last {
					line = append(line, blank(max(gap, 0))...)
				}
			}
			if !last {
				line = append(line, ' ', ' ')
			}
		}
		// No trailing blanks (the row's last cells may be empty).
		for len(line) > 0 && line[len(line)-1] == ' ' {
			line = line[:len(line)-1]
		}
		sb.Write(line)
		sb.WriteByte('\n')
	}
}

// writeItems writes items separated by " · ", as many as fit on a line of
// total runes after indent; an item longer than a line is wrapped.
func writeItems(sb *strings.Builder, items []string, indent, total int) {
	avail := max(total-indent, 20)
	line, lineW := make([]byte, 0, 256), 0
	flush := func() {
		if len(line) > 0 {
			sb.WriteString(blank(indent))
			sb.Write(line)
			sb.WriteByte('\n')
			line, lineW = line[:0], 0
		}
	}
	for _, it := range items {
		if it == "" {
			continue
		}
		w := width(it)
		switch {
		case len(line) == 0 && w <= avail:
			line, lineW = append(line, it...), w
		case len(line) > 0 && lineW+3+w <= avail:
			line = append(append(line, " · "...), it...)
			lineW += 3 + w
		default:
			flush()
			parts := wrapText(it, avail)
			for _, p := range parts[:len(parts)-1] {
				sb.WriteString(blank(indent))
				sb.WriteString(p)
				sb.WriteByte('\n')
			}
			last := parts[len(parts)-1]
			line, lineW = append(line, last...), width(last)
		}
	}
	flush()
}

// writeWrapped writes a paragraph wrapped at total runes; continuation
// lines are indented by more.
func writeWrapped(sb *strings.Builder, s string, indent, more, total int) {
	parts := wrapText(s, max(total-indent, 20))
	if len(parts) > 1 {
		rest := wrapText(strings.Join(parts[1:], " "), max(total-indent-more, 20))
		parts = append(parts[:1], rest...)
	}
	for i, p := range parts {
		n := indent
		if i > 0 {
			n += more
		}
		sb.WriteString(strings.Repeat(" ", n) + p + "\n")
	}
}
