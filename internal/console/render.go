package console

import (
	"fmt"
	"html/template"
	"math"
	"net/url"
	"time"
)

// pageNames are the pages, each templates/NAME.html over layout.html.
var pageNames = []string{"login", "error", "overview", "live", "search", "account", "held", "heldmsg", "heldaction", "complaints", "audit"}

func (s *Server) parseTemplates() error {
	s.pages = map[string]*template.Template{}
	for _, name := range pageNames {
		files := []string{"templates/layout.html", "templates/parts.html", "templates/" + name + ".html"}
		if name == "live" {
			files = []string{"templates/parts.html", "templates/live.html"}
		}
		t, err := template.New(name).Funcs(s.funcs()).ParseFS(templateFS, files...)
		if err != nil {
			return fmt.Errorf("console: template %s: %w", name, err)
		}
		s.pages[name] = t
	}
	return nil
}

func (s *Server) funcs() template.FuncMap {
	return template.FuncMap{
		"clock": func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.UTC().Format("2006-01-02 15:04 UTC")
		},
		"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			d := s.o.Now().Sub(t)
			if d < 0 {
				return "in " + shortDuration(-d)
			}
			return shortDuration(d) + " ago"
		},
		"until": func(t time.Time) string {
			if t.IsZero() {
				return "until removed"
			}
			d := t.Sub(s.o.Now())
			if d < 0 {
				return "expired"
			}
			return "until " + t.UTC().Format("2006-01-02 15:04 UTC") + " (in " + shortDuration(d) + ")"
		},
		"dur": shortDuration,
		"pct": func(f float64) string { return fmt.Sprintf("%.0f%%", math.Floor(f*100)) },
		"subjectURL": func(subject string) string {
			return "/account?s=" + url.QueryEscape(subject)
		},
		"accountURL": func(name string) string {
			return "/account?s=" + url.QueryEscape("acct:"+name)
		},
		"heldURL": func(id string) string { return "/held/message?id=" + url.QueryEscape(id) },
		"f1":      func(f float64) string { return fmt.Sprintf("%.1f", f) },
		"add":     func(a, b int) int { return a + b },
		"barWidth": func(share float64) string {
			return fmt.Sprintf("%.1f", math.Max(0, math.Min(share, 1))*100)
		},
	}
}

// shortDuration writes a duration to the second, with days: 3d4h, 2h5m,
// 45s.
func shortDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d <= 0 {
		return "0s"
	}
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h := d / time.Hour
	d -= h * time.Hour
	m := d / time.Minute
	d -= m * time.Minute
	sec := d / time.Second
	switch {
	case days > 0:
		if h > 0 {
			return fmt.Sprintf("%dd%dh", days, h)
		}
		return fmt.Sprintf("%dd", days)
	case h > 0:
		if m > 0 {
			return fmt.Sprintf("%dh%dm", h, m)
		}
		return fmt.Sprintf("%dh", h)
	case m > 0:
		if sec > 0 && m < 10 {
			return fmt.Sprintf("%dm%ds", m, sec)
		}
		return fmt.Sprintf("%dm", m)
	}
	return fmt.Sprintf("%ds", sec)
}
