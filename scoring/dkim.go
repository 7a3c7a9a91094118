package scoring

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// maxDKIMSignatures bounds the signatures verified per message.
const maxDKIMSignatures = 5

// DKIMStream verifies the DKIM-Signature headers of a message (RFC 6376)
// over its whole body, fed in chunks as it arrives, in bounded memory: the
// body passes through a pipe to go-msgauth's verifier and is not kept.
// Keys are looked up through the injected resolver, each lookup bounded by
// DefaultDNSBudget and the context. Use it from one goroutine: Write the
// body chunks, then Finish (or Close to abandon it).
type DKIMStream struct {
	pw       *io.PipeWriter
	done     chan struct{}
	results  []DKIMResult
	verified bool // results are meaningful (the verifier ran to its end)
	finished bool
	lastCR   bool
}

// NewDKIMStreamRaw is NewDKIMStream for header fields whose Value is exactly
// the text after the colon, leading whitespace included (as an MTA sends it
// to a milter that negotiated SMFIP_HDR_LEADSPC): each field is rebuilt as
// Name ":" Value, the bytes the signer hashed, so that simple header
// canonicalization verifies too. Folded lines may end in "\n" or "\r\n";
// both are rebuilt as CRLF.
func NewDKIMStreamRaw(ctx context.Context, resolver Resolver, fields []Header) *DKIMStream {
	return newDKIMStream(ctx, resolver, fields, ":")
}

// newDKIMStream rebuilds the header block with sep between each name and
// value and starts the verifier.
func newDKIMStream(ctx context.Context, resolver Resolver, headers []Header, sep string) *DKIMStream {
	s := &DKIMStream{done: make(chan struct{})}
	signed := false
	for _, h := range headers {
		if h.Is("DKIM-Signature") {
			signed = true
			break
		}
	}
	if !signed {
		s.verified = true
		close(s.done)
		return s
	}
	if resolver == nil {
		close(s.done)
		return s
	}
	pr, pw := io.Pipe()
	s.pw = pw
	var head strings.Builder
	for _, h := range headers {
		head.WriteString(h.Name)
		head.WriteString(sep)
		head.WriteString(crlf(h.Value))
		head.WriteString("\r\n")
	}
	head.WriteString("\r\n")
	lookup := func(name string) ([]string, error) {
		lctx, cancel := context.WithTimeout(ctx, DefaultDNSBudget)
		defer cancel()
		return resolver.LookupTXT(lctx, name)
	}
	go func() {
		defer close(s.done)
		r := io.MultiReader(strings.NewReader(head.String()), pr)
		verifs, err := dkim.VerifyWithOptions(r, &dkim.VerifyOptions{LookupTXT: lookup, MaxVerifications: maxDKIMSignatures})
		// The verifier may stop early; drain so that Write never blocks.
		_, drainErr := io.Copy(io.Discard, pr)
		if drainErr != nil || (err != nil && !errors.Is(err, dkim.ErrTooManySignatures)) {
			return // abandoned, or headers the verifier could not read: not verified
		}
		s.results = make([]DKIMResult, 0, len(verifs))
		for _, v := range verifs {
			r := DKIMResult{Domain: strings.ToLower(v.Domain), Verified: v.Err == nil}
			if v.Err != nil {
				r.Err = v.Err.Error()
			}
			s.results = append(s.results, r)
		}
		s.verified = true
	}()
	return s
}

// Write feeds the next chunk of the body. Bare LF line ends are written as
// CRLF, as on the wire.
func (s *DKIMStream) Write(chunk []byte) (int, error) {
	if s.finished {
		return 0, errors.New("dkim stream: write after finish")
	}
	if s.pw == nil {
		return len(chunk), nil
	}
	buf := make([]byte, 0, len(chunk)+len(chunk)/32+1)
	for _, b := range chunk {
		if b == '\n' && !s.lastCR {
			buf = append(buf, '\r')
		}
		buf = append(buf, b)
		s.lastCR = b == '\r'
	}
	if _, err := s.pw.Write(buf); err != nil {
		return 0, err
	}
	return len(chunk), nil
}

// Finish ends the body and returns one result per verified signature, or
// nil when the message could not be verified.
func (s *DKIMStream) Finish() []DKIMResult {
	if !s.finished {
		s.finished = true
		if s.pw != nil {
			s.pw.Close()
		}
	}
	<-s.done
	if !s.verified {
		return nil
	}
	if s.results == nil {
		return []DKIMResult{}
	}
	return s.results
}

// Close abandons the stream (the message was aborted); Finish then
// returns nil.
func (s *DKIMStream) Close() {
	if !s.finished {
		s.finished = true
		if s.pw != nil {
			s.pw.CloseWithError(errors.New("dkim stream abandoned"))
		}
	}
	<-s.done
}

// crlf writes the line ends of a folded header value as CRLF.
func crlf(v string) string {
	if !strings.Contains(v, "\n") {
		return v
	}
	v = strings.ReplaceAll(v, "\r\n", "\n")
	return strings.ReplaceAll(v, "\n", "\r\n")
}
