// Package campaigntest writes the messages of the campaign tests: one
// campaign personalised per recipient the way bulk senders do it (a
// greeting with the recipient's name, tracking links with per-recipient
// tokens, the recipient's address in the footer), and unrelated bodies.
package campaigntest

import (
	"bytes"
	"fmt"
	"mime/quotedprintable"
	"strings"
)

// Boundary separates the parts of the campaign message.
const Boundary = "=_campaign_part"

// ContentType is the campaign message's Content-Type.
const ContentType = `multipart/alternative; boundary="` + Boundary + `"`

// LinkHost is the host the campaign's tracking links point to.
const LinkHost = "track.spring-deals.example"

// Campaign returns the body of the campaign as sent to one recipient: name
// in the greeting, token in every tracking link, rcpt in the footer. It is
// multipart/alternative (ContentType), text and HTML, the HTML part
// quoted-printable.
func Campaign(name, token, rcpt string) string {
	link := fmt.Sprintf("https://%s/c/%s/offer?u=%s&utm_source=mail", LinkHost, token, token)
	text := fmt.Sprintf(`Hi %s,

Our spring clearance has started and every garden tool in the shop is
marked down until the end of the month. Order today and the delivery is
free, whatever the size of your order. Follow the link below to see the
whole range before the best pieces are gone:

%s

Kind regards,
the team at Spring Deals

You receive this message at %s. Unsubscribe: %s
`, name, link, rcpt, strings.Replace(link, "/offer", "/unsubscribe", 1))
	html := fmt.Sprintf(`<html><head><style>p { color: #333333; }</style></head><body>
<p>Hi %s,</p>
<p>Our spring clearance has started and every garden tool in the shop is
marked down until the end of the month. Order today and the delivery is
free, whatever the size of your order. Follow the link below to see the
whole range before the best pieces are gone:</p>
<p><a href="%s">See the offer</a></p>
<p>Kind regards,<br>the team at Spring Deals</p>
<p>You receive this message at %s. <a href="%s">Unsubscribe</a></p>
</body></html>
`, name, link, rcpt, strings.Replace(link, "/offer", "/unsubscribe", 1))
	return crlf("--" + Boundary + "\nContent-Type: text/plain; charset=utf-8\n\n" + text +
		"\n--" + Boundary + "\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n" + quotedPrintable(html) +
		"\n--" + Boundary + "--\n")
}

// words are the vocabulary of the unrelated bodies.
var words = strings.Fields(`apple river stone garden window letter morning bridge candle forest
harbor ladder meadow pencil rocket saddle thunder valley wagon yellow anchor basket castle dragon
engine feather glacier hammer island jungle kettle lantern marble needle orchard pepper quarry
ribbon silver timber umbrella velvet walnut barrel cobalt desert ember falcon granite hollow ivory
jasmine kernel lemon mirror nectar oyster parrot quiver raven spiral tulip uplift vessel willow
zephyr amber blossom cedar dune echo fable grove haven inlet jewel knoll lagoon mosaic nutmeg
opal prism quartz reef summit tide urchin vapor wren yarrow acorn bramble clover drift estuary
fern gale heron iris juniper kelp lichen moss nettle osprey pebble quail rush sedge thistle`)

// Distinct returns the i-th of a series of text/plain bodies that share no
// sentence with each other nor with the campaign.
func Distinct(i int) string {
	var b strings.Builder
	x := uint64(i)*0x9e3779b97f4a7c15 + 1
	for n := range 60 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b.WriteString(words[x%uint64(len(words))])
		if n%12 == 11 {
			b.WriteString(".\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return crlf(b.String())
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// quotedPrintable encodes s (with LF line ends) as quoted-printable.
func quotedPrintable(s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	_, _ = w.Write([]byte(strings.ReplaceAll(s, "\n", "\r\n")))
	_ = w.Close()
	return strings.ReplaceAll(b.String(), "\r\n", "\n")
}
