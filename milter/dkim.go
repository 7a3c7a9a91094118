package milter

import (
	"context"
	"strings"

	"github.com/abusemilter/abusemilter/scoring"
)

// DKIMSink returns a NewBodySink function that verifies the DKIM signatures
// of every signed message over its whole body as it streams in (bounded
// memory), so that the rules see Message.DKIM. Unsigned messages cost
// nothing beyond a header-name comparison. A nil resolver turns it off.
func DKIMSink(resolver scoring.Resolver) func(*scoring.Envelope) BodySink {
	if resolver == nil {
		return nil
	}
	return func(*scoring.Envelope) BodySink { return &dkimSink{resolver: resolver} }
}

// dkimSink collects the header fields as in the message (see
// BodySink.Header) and starts the verifier at the first body chunk, only when
// a DKIM-Signature header was seen. Each field is rebuilt as
// Name ":" value with CRLF line ends (scoring.NewDKIMStreamRaw): exact when
// the MTA negotiated SMFIP_HDR_LEADSPC, so that c=simple/... signatures
// verify; without it the value carries one space put back after the colon,
// and simple header canonicalization fails for a field signed with no space
// or a tab there (relaxed is not affected).
type dkimSink struct {
	resolver scoring.Resolver
	headers  []scoring.Header
	signed   bool
	stream   *scoring.DKIMStream
	cancel   context.CancelFunc
}

func (s *dkimSink) Header(name, value string) {
	if strings.EqualFold(name, "DKIM-Signature") {
		s.signed = true
	}
	s.headers = append(s.headers, scoring.Header{Name: name, Value: value})
}

func (s *dkimSink) start() {
	if s.stream != nil || !s.signed {
		return
	}
	// The stream's lookups are each bounded by the DNS budget; this context
	// only ends them when the message ends.
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.stream = scoring.NewDKIMStreamRaw(ctx, s.resolver, s.headers)
}

func (s *dkimSink) Write(chunk []byte) (int, error) {
	s.start()
	if s.stream == nil {
		return len(chunk), nil
	}
	return s.stream.Write(chunk)
}

func (s *dkimSink) Finish(_ context.Context, _ *scoring.Envelope, msg *scoring.Message) {
	s.start() // a signed message with an empty body
	if s.stream == nil {
		msg.DKIM = []scoring.DKIMResult{} // verified: there is no signature
		return
	}
	msg.DKIM = s.stream.Finish()
	s.cancel()
}

func (s *dkimSink) Abort() {
	if s.stream != nil {
		s.stream.Close()
		s.cancel()
	}
}
