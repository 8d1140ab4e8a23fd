package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// A record is one measurement: which table, which row (the proxy), which
// column (the metric) and its value. Repetitions are records with the same
// key; the report shows their median with min and max.
type record struct{ table, row, column, value string }

type table struct {
	name    string
	rows    []string
	columns []string
	cells   map[[2]string][]string
}

// runReport prints the records of -in (lines "table<TAB>row<TAB>column
// <TAB>value") as aligned tables, one per table name, in the order they
// first appear. Each numeric column is followed by its ratio to the row
// named by -base, unless listed in -noratio.
func runReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "-", "records file, - for stdin")
	base := fs.String("base", "nginx", "row the ratio columns divide by")
	noRatio := fs.String("noratio", "", "comma-separated columns without a ratio column")
	only := fs.String("table", "", "print only tables whose name starts with this")
	fs.Parse(args)

	var r io.Reader = os.Stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	tables, err := readTables(r)
	if err != nil {
		return err
	}
	skip := map[string]bool{}
	for _, c := range strings.Split(*noRatio, ",") {
		skip[strings.TrimSpace(c)] = true
	}
	for _, t := range tables {
		if !strings.HasPrefix(t.name, *only) {
			continue
		}
		printTable(os.Stdout, t, *base, skip)
	}
	return nil
}

func readTables(r io.Reader) ([]*table, error) {
	var tables []*table
	byName := map[string]*table{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" || strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 4 {
			return nil, fmt.Errorf("line %d: %d fields, want 4 (table, row, column, value)", line, len(f))
		}
		rec := record{f[0], f[1], f[2], f[3]}
		t := byName[rec.table]
		if t == nil {
			t = &table{name: rec.table, cells: map[[2]string][]string{}}
			byName[rec.table] = t
			tables = append(tables, t)
		}
		if !slices.Contains(t.rows, rec.row) {
			t.rows = append(t.rows, rec.row)
		}
		if !slices.Contains(t.columns, rec.column) {
			t.columns = append(t.columns, rec.column)
		}
		k := [2]string{rec.row, rec.column}
		t.cells[k] = append(t.cells[k], rec.value)
	}
	return tables, sc.Err()
}

// summary is the median, min and max of a cell's numeric values; ok is
// false when any value is not a number (the first text is shown then).
type summary struct {
	med, min, max float64
	n             int
	ok            bool
	text          string
}

func summarize(values []string) summary {
	if len(values) == 0 {
		return summary{text: "-"}
	}
	nums := make([]float64, 0, len(values))
	for _, v := range values {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) {
			return summary{text: v}
		}
		nums = append(nums, f)
	}
	slices.Sort(nums)
	med := nums[len(nums)/2]
	if len(nums)%2 == 0 {
		med = (nums[len(nums)/2-1] + nums[len(nums)/2]) / 2
	}
	return summary{med: med, min: nums[0], max: nums[len(nums)-1], n: len(nums), ok: true}
}

// num prints a figure with about three significant digits.
func num(f float64) string {
	a := math.Abs(f)
	switch {
	case a >= 100 || f == math.Trunc(f) && a < 1e15:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(f, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(f, 'f', 2, 64)
	default:
		return strconv.FormatFloat(f, 'f', 3, 64)
	}
}

func (s summary) String() string {
	if !s.ok {
		return s.text
	}
	if s.n == 1 || s.min == s.max {
		return num(s.med)
	}
	return fmt.Sprintf("%s (%s-%s)", num(s.med), num(s.min), num(s.max))
}

func printTable(w io.Writer, t *table, base string, skip map[string]bool) {
	header := []string{""}
	type col struct {
		name  string
		ratio bool
	}
	var cols []col
	hasBase := slices.Contains(t.rows, base)
	for _, c := range t.columns {
		header = append(header, c)
		cols = append(cols, col{c, false})
		if hasBase && !skip[c] && summarize(t.cells[[2]string{base, c}]).ok {
			header = append(header, "x "+base)
			cols = append(cols, col{c, true})
		}
	}
	grid := [][]string{header}
	for _, r := range t.rows {
		line := []string{r}
		for _, c := range cols {
			s := summarize(t.cells[[2]string{r, c.name}])
			if !c.ratio {
				line = append(line, s.String())
				continue
			}
			b := summarize(t.cells[[2]string{base, c.name}])
			if !s.ok || !b.ok || b.med == 0 {
				line = append(line, "-")
				continue
			}
			line = append(line, fmt.Sprintf("%.2fx", s.med/b.med))
		}
		grid = append(grid, line)
	}
	widths := make([]int, len(header))
	for _, line := range grid {
		for i, cell := range line {
			widths[i] = max(widths[i], len(cell))
		}
	}
	fmt.Fprintf(w, "\n%s\n", t.name)
	for li, line := range grid {
		var b strings.Builder
		for i, cell := range line {
			if i == 0 {
				fmt.Fprintf(&b, "  %-*s", widths[i], cell)
			} else {
				fmt.Fprintf(&b, "  %*s", widths[i], cell)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if li == 0 {
			total := 0
			for _, wd := range widths {
				total += wd + 2
			}
			fmt.Fprintln(w, "  "+strings.Repeat("-", total-2))
		}
	}
}
