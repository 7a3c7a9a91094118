package config

import (
	"regexp"
	"strings"
	"testing"
)

var lineRE = regexp.MustCompile(` \(line \d+\)`)

func TestRedisSectionErrors(t *testing.T) {
	cases := map[string][]string{
		"redis: {}\n": {"redis: set url"},
		"redis:\n  url: redis://:hunter2@127.0.0.1:7000\n":                          {"redis.url: must not contain a password"},
		"redis:\n  url: http://127.0.0.1:7000\n":                                    {"redis.url: scheme \"http\""},
		"redis:\n  addrs: [127.0.0.1:7000, nope]\n  cluster: true\n":                {"redis.addrs[1]: \"nope\" is not host:port"},
		"redis:\n  addrs: [127.0.0.1:7000]\n":                                       {"redis.addrs: say what"},
		"redis:\n  url: redis://127.0.0.1:7000\n  timeout: 30s\n":                   {"redis.timeout: 30s is out of range"},
		"redis:\n  url: redis://127.0.0.1:7000\n  password_env: AM_NO_SUCH_VAR_X\n": {"redis.password_env: environment variable \"AM_NO_SUCH_VAR_X\" is not set"},
		"redis:\n  url: redis://127.0.0.1:7000\n  key_prefix: \"a{b\"\n":            {"redis.key_prefix:"},
		"limits:\n  account_messages: [\"10/1h\", \"x/1h\"]\n":                      {"limits.account_messages[1]:"},
		"strikes:\n  threshold: 3\n  window: 0\n":                                   {"strikes.window: must be positive"},
	}
	for in, wants := range cases {
		_, err := Parse([]byte(in), "t.yaml")
		if err == nil {
			t.Errorf("%q: no error", in)
			continue
		}
		// The messages are compared without their "(line N)".
		msg := lineRE.ReplaceAllString(err.Error(), "")
		for _, w := range wants {
			if !strings.Contains(msg, w) {
				t.Errorf("%q: error %v\nwant it to contain %q", in, err, w)
			}
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: the password is in the error: %v", in, err)
		}
	}
}
