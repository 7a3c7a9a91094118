package loadgen

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// GenerateOptions shapes a generated message pool.
type GenerateOptions struct {
	Count       int       // messages in the pool (they are cycled); default 1000
	Accounts    int       // distinct SASL logins; default 100
	ForgedShare float64   // share (0..1) of messages whose From is a domain the account does not own
	MinRcpt     int       // recipients per message, at least; default 1
	MaxRcpt     int       // recipients per message, at most; default 5
	BodySize    int       // approximate body size in bytes; default 4000 (about 5 KB with headers)
	Seed        uint64    // same seed, same pool
	Now         time.Time // Date and Received times are set just before it; default time.Now()
}

// UsersPerCustomer is how many logins share one customer domain in a
// generated pool: account a logs in as user<a+1>@customer<a/3+1>.example.
const UsersPerCustomer = 3

// AccountLogin returns the SASL login of generated account a (from 0).
func AccountLogin(a int) string {
	return fmt.Sprintf("user%d@%s", a+1, AccountDomain(a))
}

// AccountDomain returns the domain that generated account a (from 0) owns.
func AccountDomain(a int) string {
	return fmt.Sprintf("customer%d.example", a/UsersPerCustomer+1)
}

// Generate builds a pool of realistic outbound submissions: 10 to 20 header
// fields (Received, Date, From, To, Message-ID, Subject, MIME fields and a
// varying set of optional ones), MinRcpt to MaxRcpt recipients, a text or
// multipart/alternative body. Sender and From belong to the account's own
// domain, except in a share ForgedShare of messages where both name a
// domain the account does not own. Message-IDs are "<N.SEED@domain>" with N
// the message's index in the pool.
func Generate(opts GenerateOptions) (Pool, error) {
	if opts.Count == 0 {
		opts.Count = 1000
	}
	if opts.Accounts == 0 {
		opts.Accounts = 100
	}
	if opts.MinRcpt == 0 {
		opts.MinRcpt = 1
	}
	if opts.MaxRcpt == 0 {
		opts.MaxRcpt = max(5, opts.MinRcpt)
	}
	if opts.BodySize == 0 {
		opts.BodySize = 4000
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	var errs []error
	if opts.Count < 0 {
		errs = append(errs, fmt.Errorf("message count %d: must be positive", opts.Count))
	}
	if opts.Accounts < 0 {
		errs = append(errs, fmt.Errorf("account count %d: must be positive", opts.Accounts))
	}
	if opts.ForgedShare < 0 || opts.ForgedShare > 1 {
		errs = append(errs, fmt.Errorf("forged share %v: must be between 0 and 1", opts.ForgedShare))
	}
	if opts.MinRcpt < 1 || opts.MaxRcpt < opts.MinRcpt {
		errs = append(errs, fmt.Errorf("recipients per message %d..%d: need 1 <= min <= max", opts.MinRcpt, opts.MaxRcpt))
	}
	if opts.BodySize < 0 {
		errs = append(errs, fmt.Errorf("body size %d: must be positive", opts.BodySize))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	pool := make(Pool, opts.Count)
	for i := range pool {
		pool[i] = generateOne(i, opts)
	}
	return pool, nil
}

var (
	firstNames = []string{"Anna", "Ben", "Chiara", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Klara", "Luca", "Mia", "Noah", "Olga", "Paul"}
	lastNames  = []string{"Schmidt", "Rossi", "Martin", "Nowak", "Jensen", "Garcia", "Dubois", "Novak", "Smith", "Kowalski", "Weber", "Moreau"}
	roleBoxes  = []string{"info", "noreply", "newsletter", "billing", "support", "office", "shop"}
	forgedFrom = []string{"security@paypal.example", "service@bigbank.example", "no-reply@microsoft-support.example", "ceo@partner-corp.example", "admin@customer-secure.example", "account@amaz0n.example"}
	rcptDomain = []string{"example.org", "example.net", "mail.example.com", "post.example", "inbox.example.org", "webmail.example.net"}
	subjects   = []string{"Your invoice %d", "Meeting notes for week %d", "Order #%d has shipped", "Re: question about ticket %d", "Newsletter issue %d", "Reminder: appointment %d", "Quote %d as discussed", "Password reset request %d"}
	mailers    = []string{"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0", "Microsoft Outlook 16.0", "Roundcube Webmail/1.6.9", "PHPMailer 6.9.1 (https://github.com/PHPMailer/PHPMailer)", "Apple Mail (2.3776.700.51)"}
	words      = strings.Fields("the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were her she there would their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three")
)

func generateOne(i int, opts GenerateOptions) *Message {
	rng := rand.New(rand.NewPCG(opts.Seed, uint64(i)))
	account := rng.IntN(opts.Accounts)
	login := AccountLogin(account)
	domain := AccountDomain(account)
	customer := account / UsersPerCustomer

	first, last := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
	sender := login
	display := first + " " + last
	if rng.IntN(10) < 3 {
		box := roleBoxes[rng.IntN(len(roleBoxes))]
		sender = box + "@" + domain
		display = strings.ToUpper(box[:1]) + box[1:] + " " + strings.TrimSuffix(domain, ".example")
	}
	if rng.Float64() < opts.ForgedShare {
		sender = forgedFrom[rng.IntN(len(forgedFrom))]
		_, d, _ := strings.Cut(sender, "@")
		display = "Customer Service " + strings.TrimSuffix(d, ".example")
	}
	_, fromDomain, _ := strings.Cut(sender, "@")

	nrcpt := opts.MinRcpt + rng.IntN(opts.MaxRcpt-opts.MinRcpt+1)
	rcpts := make([]string, nrcpt)
	for r := range rcpts {
		rcpts[r] = fmt.Sprintf("%s.%s%d@%s", strings.ToLower(firstNames[rng.IntN(len(firstNames))]),
			strings.ToLower(lastNames[rng.IntN(len(lastNames))]), rng.IntN(1000), rcptDomain[rng.IntN(len(rcptDomain))])
	}
	to, cc := rcpts, []string(nil)
	if nrcpt > 2 && rng.IntN(2) == 0 {
		to, cc = rcpts[:2], rcpts[2:]
	}

	clientAddr := fmt.Sprintf("10.%d.%d.%d", customer/250%250, customer%250, account%UsersPerCustomer+10)
	clientName := fmt.Sprintf("web%d.%s", account%UsersPerCustomer+1, domain)
	sent := opts.Now.Add(-time.Duration(rng.IntN(120)+1) * time.Second)
	queueID := fmt.Sprintf("%X", rng.Uint64()&0xFFFFFFFFFF)

	h := make([]HeaderField, 0, 20)
	add := func(name, value string) { h = append(h, HeaderField{Name: name, Value: value}) }
	add("Received", fmt.Sprintf("from %s (%s [%s])\n\tby submission.hoster.example (Postfix) with ESMTPSA id %s\n\tfor <%s>; %s",
		clientName, clientName, clientAddr, queueID, rcpts[0], sent.Format(time.RFC1123Z)))
	add("Date", sent.Format(time.RFC1123Z))
	add("From", fmt.Sprintf("%q <%s>", display, sender))
	add("To", joinAddrs(to))
	if len(cc) > 0 {
		add("Cc", joinAddrs(cc))
	}
	add("Subject", fmt.Sprintf(subjects[rng.IntN(len(subjects))], 1000+rng.IntN(9000)))
	add("Message-ID", fmt.Sprintf("<%d.%d@%s>", i, opts.Seed, fromDomain))
	add("MIME-Version", "1.0")
	multipart := rng.IntN(10) < 3
	boundary := fmt.Sprintf("=_Part_%d_%d", i, rng.Uint32())
	if multipart {
		add("Content-Type", fmt.Sprintf("multipart/alternative;\n\tboundary=%q", boundary))
	} else {
		add("Content-Type", "text/plain; charset=utf-8; format=flowed")
		add("Content-Transfer-Encoding", "7bit")
	}
	add("User-Agent", mailers[rng.IntN(len(mailers))])
	add("Content-Language", "en-US")
	optional := []func(){
		func() { add("Reply-To", sender) },
		func() {
			add("List-Unsubscribe", fmt.Sprintf("<mailto:unsubscribe@%s?subject=unsubscribe-%d>, <https://%s/unsubscribe/%d>", fromDomain, i, fromDomain, i))
			add("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
		},
		func() { add("X-Priority", "3 (Normal)") },
		func() { add("Organization", strings.TrimSuffix(domain, ".example")+" Ltd.") },
		func() {
			ref := fmt.Sprintf("<%d.%d.reply@%s>", rng.IntN(100000), opts.Seed, rcptDomain[rng.IntN(len(rcptDomain))])
			add("In-Reply-To", ref)
			add("References", ref)
		},
		func() { add("X-Mailer-Campaign", fmt.Sprintf("cmp-%d", rng.IntN(500))) },
		func() { add("Auto-Submitted", "auto-generated") },
		func() { add("Importance", "normal") },
	}
	rng.Shuffle(len(optional), func(a, b int) { optional[a], optional[b] = optional[b], optional[a] })
	for _, f := range optional[:rng.IntN(len(optional)+1)] {
		if len(h) >= 18 {
			break
		}
		f()
	}

	text := generateText(rng, opts.BodySize)
	var body strings.Builder
	if multipart {
		half := len(text) / 2
		half += strings.Index(text[half:], "\r\n") + 2 // split at a line end
		fmt.Fprintf(&body, "This is a multi-part message in MIME format.\r\n\r\n--%s\r\n", boundary)
		body.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
		body.WriteString(text[:half])
		fmt.Fprintf(&body, "\r\n--%s\r\n", boundary)
		body.WriteString("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n<html><body><p>\r\n")
		body.WriteString(text[half:])
		fmt.Fprintf(&body, "</p></body></html>\r\n--%s--\r\n", boundary)
	} else {
		body.WriteString(text)
		fmt.Fprintf(&body, "-- \r\n%s %s\r\n%s\r\n", first, last, domain)
	}
	return &Message{
		Login:      login,
		ClientAddr: clientAddr,
		ClientName: clientName,
		Helo:       clientName,
		Sender:     sender,
		Recipients: rcpts,
		Header:     h,
		Body:       []byte(body.String()),
	}
}

func joinAddrs(addrs []string) string {
	var b strings.Builder
	for i, a := range addrs {
		if i > 0 {
			b.WriteString(",\n\t")
		}
		b.WriteString(a)
	}
	return b.String()
}

// generateText returns about size bytes of words in CRLF lines of at most
// 72 characters, with a blank line between paragraphs.
func generateText(rng *rand.Rand, size int) string {
	var b strings.Builder
	b.Grow(size + 80)
	line := 0
	for b.Len() < size {
		w := words[rng.IntN(len(words))]
		if line+len(w)+1 > 72 {
			b.WriteString("\r\n")
			if rng.IntN(8) == 0 {
				b.WriteString("\r\n")
			}
			line = 0
		} else if line > 0 {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	b.WriteString("\r\n")
	return b.String()
}
