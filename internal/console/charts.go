package console

import (
	"fmt"
	"sort"
	"time"
)

// chart is a small bar chart drawn as SVG on the server: bars, axis
// labels and a legend, every number computed here, no script.
type chart struct {
	Width, Height int
	Bars          []bar
	Labels        []label
	Grid          []label // horizontal grid lines with their value
	Legend        []legendItem
	Empty         bool
	Title         string
}

type bar struct {
	X, Y, W, H float64
	Class      string
	Title      string // tooltip: hour, series, count
}

type label struct {
	X, Y float64
	Text string
}

type legendItem struct {
	Class string
	Text  string
	Count int64
}

const (
	chartW      = 480
	chartH      = 160
	chartLeft   = 34
	chartBottom = 20
	chartTop    = 8
)

// stacked draws hours columns of stacked series (series[i][h]) named
// names, the oldest hour first, ending at now's hour.
func stacked(series [][]int64, names []string, hours int, now time.Time, title string) chart {
	c := chart{Width: chartW, Height: chartH, Title: title}
	var peak int64
	totals := make([]int64, len(series))
	for h := 0; h < hours; h++ {
		var sum int64
		for i := range series {
			sum += series[i][h]
			totals[i] += series[i][h]
		}
		peak = max(peak, sum)
	}
	for i, n := range names {
		c.Legend = append(c.Legend, legendItem{Class: fmt.Sprintf("s%d", i), Text: n, Count: totals[i]})
	}
	if peak == 0 {
		c.Empty = true
		peak = 1
	}
	top := niceCeil(peak)
	plotW := float64(chartW - chartLeft - 4)
	plotH := float64(chartH - chartBottom - chartTop)
	colW := plotW / float64(hours)
	for g := 0; g <= 2; g++ {
		v := top * int64(g) / 2
		y := float64(chartTop) + plotH - plotH*float64(v)/float64(top)
		c.Grid = append(c.Grid, label{X: chartLeft - 4, Y: y, Text: fmt.Sprint(v)})
	}
	end := now.Truncate(time.Hour)
	for h := 0; h < hours; h++ {
		x := float64(chartLeft) + float64(h)*colW
		base := float64(chartTop) + plotH
		hourStart := end.Add(-time.Duration(hours-1-h) * time.Hour)
		for i := range series {
			n := series[i][h]
			if n == 0 {
				continue
			}
			hgt := plotH * float64(n) / float64(top)
			base -= hgt
			c.Bars = append(c.Bars, bar{X: x + 1, Y: base, W: max(colW-2, 1), H: hgt, Class: fmt.Sprintf("s%d", i),
				Title: fmt.Sprintf("%s UTC: %s %d", hourStart.UTC().Format("15:04"), names[i], n)})
		}
		if (hours-1-h)%6 == 0 {
			c.Labels = append(c.Labels, label{X: x + colW/2, Y: float64(chartH - 5), Text: hourStart.UTC().Format("15h")})
		}
	}
	return c
}

// niceCeil rounds a peak up to 1, 2 or 5 times a power of ten (so that
// the grid reads well), and at least 2 for an even middle line.
func niceCeil(v int64) int64 {
	if v <= 2 {
		return 2
	}
	p := int64(1)
	for p*10 < v {
		p *= 10
	}
	for _, m := range []int64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// maxSeries is how many clauses the refusal chart names; the rest are
// "other".
const maxSeries = 5

// refusalChart counts refusals per hour of the last 24 by clause.
func refusalChart(refs []Refusal, now time.Time) chart {
	const hours = 24
	end := now.Truncate(time.Hour).Add(time.Hour)
	start := end.Add(-hours * time.Hour)
	byRule := map[string]int64{}
	for _, r := range refs {
		if !r.At.Before(start) && r.At.Before(end) {
			byRule[ruleOf(r)]++
		}
	}
	rules := make([]string, 0, len(byRule))
	for r := range byRule {
		rules = append(rules, r)
	}
	sort.Slice(rules, func(i, j int) bool {
		if byRule[rules[i]] != byRule[rules[j]] {
			return byRule[rules[i]] > byRule[rules[j]]
		}
		return rules[i] < rules[j]
	})
	names := rules
	if len(rules) > maxSeries {
		names = append(append([]string{}, rules[:maxSeries]...), "other")
	}
	index := map[string]int{}
	for i, r := range rules {
		index[r] = min(i, maxSeries)
	}
	series := make([][]int64, len(names))
	for i := range series {
		series[i] = make([]int64, hours)
	}
	for _, r := range refs {
		if r.At.Before(start) || !r.At.Before(end) {
			continue
		}
		h := int(r.At.Sub(start) / time.Hour)
		series[index[ruleOf(r)]][h]++
	}
	return stacked(series, names, hours, now, "Refusals per hour by clause, last 24 hours")
}

// ruleOf names a refusal's series: its clause, else its rule.
func ruleOf(r Refusal) string {
	switch {
	case r.Clause != "":
		return r.Clause
	case r.Rule != "":
		return r.Rule
	}
	return "unknown"
}

// sendingChart draws an account's messages per hour.
func sendingChart(perHour []int64, now time.Time) chart {
	return stacked([][]int64{perHour}, []string{"messages"}, len(perHour), now, "Messages sent per hour, last 24 hours")
}
