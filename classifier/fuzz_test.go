package classifier

import (
	"testing"

	"github.com/abusemilter/abusemilter/scoring"
)

// FuzzUnmarshal: any bytes give a model or an error wrapping ErrFormat,
// never a panic; a model that loads classifies.
func FuzzUnmarshal(f *testing.F) {
	good := trainSmall(f).Marshal()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Unmarshal(data)
		if err != nil {
			return
		}
		ham, _ := smallSet(t)
		if p := m.SpamProbability(ham[0]); !(p >= 0 && p <= 1) {
			t.Fatalf("probability %v", p)
		}
	})
}

// FuzzTokenize: any message gives a probability in [0, 1] without a
// panic, and the same one twice (the pooled scratch keeps nothing).
func FuzzTokenize(f *testing.F) {
	ham, spam := smallSet(f)
	m := trainSmall(f)
	f.Add([]byte("From: a@b\nContent-Type: multipart/mixed; boundary=x\n\n--x\nContent-Transfer-Encoding: base64\n\nAAAA\n--x\nContent-Transfer-Encoding: quoted-printable\n\n=4=\n<a href=http://[::1]:8/p>x</a\n"))
	f.Add([]byte("Subject: =?utf-8?b?????=\n\n<<<>>>http://@:/\n"))
	f.Add([]byte("From: " + ham[0].Get("From") + "\n\n" + string(spam[0].Body)))
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg, err := scoring.ParseBytes(raw, 64<<10)
		if err != nil {
			return
		}
		p := m.SpamProbability(msg)
		if !(p >= 0 && p <= 1) || m.SpamProbability(msg) != p {
			t.Fatalf("probability %v, then %v", p, m.SpamProbability(msg))
		}
	})
}
