package config_test

import "regexp"

var lineNote = regexp.MustCompile(` \(line \d+\)`)

// withoutLines is an error's text without the "(line N)" after each
// problem's path, for tests that name problems by path and message only.
func withoutLines(err error) string {
	if err == nil {
		return ""
	}
	return lineNote.ReplaceAllString(err.Error(), "")
}
