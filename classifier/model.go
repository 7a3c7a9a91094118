// Package classifier owns the content classifier that a provider trains on
// its own mail: the tokenizer (the header fields that describe the content
// and the sending software, the words of the text and de-tagged HTML parts,
// the hosts, registrable domains and paths of links, each prefixed by where
// it came from), feature hashing into a fixed number of buckets, an
// L2-regularised logistic regression over the hashed features, trained by
// deterministic stochastic gradient descent, and the model file. A
// message's features are binary and scaled by 1/sqrt(n), n the number of
// its distinct features, so that a long message does not count more than
// a short one: p = 1/(1+exp(-(bias + Σ w_f / sqrt(n)))).
//
// The model file is little-endian binary:
//
//	magic    8 bytes  "AMCLSF\r\n"
//	version  uint32   FormatVersion
//	hlen     uint32   length of the header
//	header   hlen     JSON: the Summary (training counts and figures, the
//	                  tokenizer version, bucket count, bias, hold probability)
//	count    uint32   number of weights, equal to the header's bucket count
//	weights  count×float32
//	crc      uint32   CRC-32C (Castagnoli) of every byte before it
//
// The same training messages in the same order give the same bytes on
// the same kind of machine (floating-point results may differ in the last
// bit between architectures).
// Package scoring calls a Model through its Classifier interface; the
// daemon and abusescan load it from rules.classifier.model.
package classifier

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"sync"

	"github.com/abusemilter/abusemilter/scoring"
)

// FormatVersion is the version of the model file format written by Marshal.
const FormatVersion = 1

// magic starts every model file.
const magic = "AMCLSF\r\n"

// Bounds Load enforces on a model file.
const (
	minBuckets   = 1 << 10
	maxBuckets   = 1 << 24
	maxHeaderLen = 64 << 10
)

// DefaultBuckets is the number of feature buckets a model gets unless
// training says otherwise: 2^20, a 4 MiB model.
const DefaultBuckets = 1 << 20

// DefaultHoldProbability is the spam probability at or above which the
// CONTENT_CLASSIFIER rule fires unless the model or the config says
// otherwise. At 0.9 the held-out half of the public corpus has no more
// than 0.5% of ham flagged and at least 90% of spam (docs/QUALITY.md).
const DefaultHoldProbability = 0.9

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Summary is what a model records about its training, kept in the model
// file's header.
type Summary struct {
	Tokenizer int    `json:"tokenizer"` // TokenizerVersion at training
	Buckets   int    `json:"buckets"`   // feature buckets (a power of two)
	Ham       int    `json:"ham"`       // ham messages trained on
	Spam      int    `json:"spam"`      // spam messages trained on
	Trained   string `json:"trained"`   // training date, YYYY-MM-DD (UTC)
	// HoldProbability is the spam probability suggested for holding.
	HoldProbability float64 `json:"hold_probability"`
	Bias            float64 `json:"bias"`
	Epochs          int     `json:"epochs"`
	L2              float64 `json:"l2"`
	// Features is the number of buckets with a non-zero weight.
	Features int `json:"features"`
	// Training is the model's own training set at HoldProbability.
	Training Evaluation `json:"training"`
	// HeldOut, when set, is a model trained on part of the messages
	// evaluated on the rest (see TrainOptions.HoldOut).
	HeldOut *Evaluation `json:"held_out,omitempty"`
}

// Evaluation counts how a model flags labelled messages at a probability.
type Evaluation struct {
	Ham         int `json:"ham"`
	Spam        int `json:"spam"`
	HamFlagged  int `json:"ham_flagged"`  // false positives
	SpamFlagged int `json:"spam_flagged"` // true positives
}

// HamRate is the share of ham flagged.
func (e Evaluation) HamRate() float64 { return ratio(e.HamFlagged, e.Ham) }

// SpamRate is the share of spam flagged.
func (e Evaluation) SpamRate() float64 { return ratio(e.SpamFlagged, e.Spam) }

// Accuracy is the share of messages classified right.
func (e Evaluation) Accuracy() float64 {
	return ratio(e.Ham-e.HamFlagged+e.SpamFlagged, e.Ham+e.Spam)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// String reads like "1375 ham, 0.29% flagged; 698 spam, 95.1% flagged".
func (e Evaluation) String() string {
	return fmt.Sprintf("%d ham, %.2f%% flagged; %d spam, %.1f%% flagged (accuracy %.2f%%)",
		e.Ham, 100*e.HamRate(), e.Spam, 100*e.SpamRate(), 100*e.Accuracy())
}

// Model is a trained classifier. It is immutable and safe for concurrent
// use.
type Model struct {
	summary Summary
	weights []float32
	pool    sync.Pool // *scratch
}

// The model is the scoring engine's classifier.
var _ scoring.Classifier = (*Model)(nil)

func newModel(s Summary, weights []float32) *Model {
	m := &Model{summary: s, weights: weights}
	m.pool.New = func() any { return newScratch(len(weights)) }
	return m
}

// Summary returns what the model records about its training.
func (m *Model) Summary() Summary { return m.summary }

// HoldProbability is the spam probability the model suggests for holding.
func (m *Model) HoldProbability() float64 { return m.summary.HoldProbability }

// Describe names the model in finding reasons: "model trained 2026-12-02
// on 1375 ham / 698 spam".
func (m *Model) Describe() string {
	return fmt.Sprintf("model trained %s on %d ham / %d spam", m.summary.Trained, m.summary.Ham, m.summary.Spam)
}

// SpamProbability returns the model's probability that msg is spam.
func (m *Model) SpamProbability(msg *scoring.Message) float64 {
	s := m.pool.Get().(*scratch)
	features(msg, s)
	p := m.probability(s.set)
	m.pool.Put(s)
	return p
}

// probability is the logistic function of the bias and the weights of a
// feature set.
func (m *Model) probability(set []uint32) float64 {
	z := 0.0
	for _, b := range set {
		z += float64(m.weights[b])
	}
	z = m.summary.Bias + featureScale(len(set))*z
	return 1 / (1 + math.Exp(-z))
}

// Marshal returns the model file's bytes.
func (m *Model) Marshal() []byte {
	header, err := json.Marshal(m.summary)
	if err != nil {
		panic(err) // a struct of numbers and strings always marshals
	}
	out := make([]byte, 0, len(magic)+12+len(header)+4*len(m.weights)+4)
	out = append(out, magic...)
	out = binary.LittleEndian.AppendUint32(out, FormatVersion)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(header)))
	out = append(out, header...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(m.weights)))
	for _, w := range m.weights {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(w))
	}
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, crcTable))
}

// ErrFormat is wrapped by every error about a model file's content.
var ErrFormat = errors.New("not a valid model")

// Load reads and validates a model file: errors name the path and what is
// wrong ("model /etc/m.bin: bad magic: not a valid model").
func Load(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	defer f.Close()
	// The largest valid file, plus one byte to notice a longer one.
	limit := int64(len(magic) + 12 + maxHeaderLen + 4*maxBuckets + 4)
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("model %s: larger than %d bytes: %w", path, limit, ErrFormat)
	}
	m, err := Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	return m, nil
}

// Unmarshal validates and decodes a model file's bytes.
func Unmarshal(data []byte) (*Model, error) {
	bad := func(format string, args ...any) (*Model, error) {
		return nil, fmt.Errorf(format+": %w", append(args, ErrFormat)...)
	}
	if len(data) < len(magic) || !bytes.Equal(data[:len(magic)], []byte(magic)) {
		return bad("bad magic")
	}
	r := data[len(magic):]
	if len(r) < 8 {
		return bad("truncated header")
	}
	if v := binary.LittleEndian.Uint32(r); v != FormatVersion {
		return bad("format version %d, want %d", v, FormatVersion)
	}
	hlen := binary.LittleEndian.Uint32(r[4:])
	r = r[8:]
	if hlen > maxHeaderLen || uint64(len(r)) < uint64(hlen)+4 {
		return bad("truncated header (%d bytes announced, %d left)", hlen, len(r))
	}
	header := r[:hlen]
	r = r[hlen:]
	count := binary.LittleEndian.Uint32(r)
	r = r[4:]
	if uint64(len(r)) != 4*uint64(count)+4 {
		return bad("truncated or trailing data: %d weights announced, %d bytes left", count, len(r))
	}
	body := data[:len(data)-4]
	if want, got := binary.LittleEndian.Uint32(data[len(data)-4:]), crc32.Checksum(body, crcTable); want != got {
		return bad("checksum %08x, computed %08x", want, got)
	}
	var s Summary
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return bad("header: %v", err)
	}
	switch {
	case s.Tokenizer != TokenizerVersion:
		return bad("tokenizer version %d, want %d (retrain the model)", s.Tokenizer, TokenizerVersion)
	case s.Buckets < minBuckets || s.Buckets > maxBuckets || s.Buckets&(s.Buckets-1) != 0:
		return bad("%d buckets: want a power of two from %d to %d", s.Buckets, minBuckets, maxBuckets)
	case uint32(s.Buckets) != count:
		return bad("header says %d buckets, file has %d weights", s.Buckets, count)
	case !(s.HoldProbability > 0 && s.HoldProbability < 1):
		return bad("hold probability %v: want between 0 and 1", s.HoldProbability)
	case math.IsNaN(s.Bias) || math.IsInf(s.Bias, 0):
		return bad("bias %v", s.Bias)
	case s.Ham < 0 || s.Spam < 0:
		return bad("negative message counts")
	}
	weights := make([]float32, count)
	for i := range weights {
		w := math.Float32frombits(binary.LittleEndian.Uint32(r[4*i:]))
		if math.IsNaN(float64(w)) || math.IsInf(float64(w), 0) {
			return bad("weight %d is %v", i, w)
		}
		weights[i] = w
	}
	return newModel(s, weights), nil
}
