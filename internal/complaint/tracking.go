package complaint

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// The tracking header's value is "v1.ACCOUNT.TIME.MAC": the account name
// in unpadded base64url, the time in Unix seconds, and the first 16 bytes
// of HMAC-SHA256 over "v1.ACCOUNT.TIME" under the provider's key, in
// unpadded base64url. Opaque to the recipient, readable and checkable by
// whoever holds the key.

// Why a tracking header is not trusted.
var (
	ErrTrackingMalformed = errors.New("tracking header malformed")
	ErrTrackingForged    = errors.New("tracking header forged or altered")
	ErrTrackingExpired   = errors.New("tracking header expired")
)

var b64 = base64.RawURLEncoding

// Track returns the tracking header's value for an account at a time.
func Track(key []byte, account string, at time.Time) string {
	body := "v1." + b64.EncodeToString([]byte(account)) + "." + strconv.FormatInt(at.Unix(), 10)
	return body + "." + b64.EncodeToString(mac(key, body))
}

func mac(key []byte, body string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(body))
	return m.Sum(nil)[:16]
}

// Verify checks a tracking header's value and returns the account and time
// it carries. A value not made with key, altered, older than maxAge (or
// dated in the future by more than a day) is refused.
func Verify(key []byte, value string, now time.Time, maxAge time.Duration) (string, time.Time, error) {
	parts := strings.Split(strings.TrimSpace(value), ".")
	if len(parts) != 4 || parts[0] != "v1" {
		return "", time.Time{}, ErrTrackingMalformed
	}
	got, err := b64.DecodeString(parts[3])
	if err != nil {
		return "", time.Time{}, ErrTrackingMalformed
	}
	if !hmac.Equal(got, mac(key, strings.Join(parts[:3], "."))) {
		return "", time.Time{}, ErrTrackingForged
	}
	account, err := b64.DecodeString(parts[1])
	secs, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || err2 != nil || len(account) == 0 {
		return "", time.Time{}, ErrTrackingMalformed
	}
	at := time.Unix(secs, 0)
	if now.Sub(at) > maxAge || at.Sub(now) > 24*time.Hour {
		return "", at, ErrTrackingExpired
	}
	return string(account), at, nil
}
