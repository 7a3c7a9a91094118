package classifier

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/abusemilter/abusemilter/scoring"
)

// Trainer collects labelled messages and trains a model on them. The
// model depends only on the messages, their order and the options: the
// same inputs give the same model bytes.
type Trainer struct {
	buckets  int
	s        *scratch
	examples []example
	ham      int
	spam     int
}

// example is one training message: its label and feature buckets.
type example struct {
	spam     bool
	features []uint32 // sorted
}

// NewTrainer returns a trainer for a model of the given number of feature
// buckets (a power of two; 0 means DefaultBuckets).
func NewTrainer(buckets int) (*Trainer, error) {
	if buckets == 0 {
		buckets = DefaultBuckets
	}
	if buckets < minBuckets || buckets > maxBuckets || buckets&(buckets-1) != 0 {
		return nil, fmt.Errorf("%d buckets: want a power of two from %d to %d", buckets, minBuckets, maxBuckets)
	}
	return &Trainer{buckets: buckets, s: newScratch(buckets)}, nil
}

// Add tokenizes a message and keeps it for training.
func (t *Trainer) Add(msg *scoring.Message, spam bool) {
	features(msg, t.s)
	f := slices.Clone(t.s.set)
	slices.Sort(f)
	t.examples = append(t.examples, example{spam: spam, features: f})
	if spam {
		t.spam++
	} else {
		t.ham++
	}
}

// TrainOptions are the training parameters; the zero value of a field
// means its default.
type TrainOptions struct {
	// Epochs is the number of passes over the messages; default 30.
	Epochs int
	// LearningRate is the first pass's step size; it decays as 1/(1+pass).
	// Default 6 (features have the value 1/sqrt(n), small for long
	// messages).
	LearningRate float64
	// L2 is the regularisation strength (weight decay per step of the
	// weights a message touches); default 1e-5. The defaults are those
	// that flag the least held-out ham of the public corpus at the default
	// hold probability while meeting the spam bar (docs/QUALITY.md).
	L2 float64
	// Seed orders the messages in each pass (a PCG permutation); default 1.
	Seed uint64
	// HoldProbability is recorded in the model as the suggested probability
	// for holding and used for the summary's figures; default
	// DefaultHoldProbability.
	HoldProbability float64
	// HoldOut, when at least 2, also trains a model on all messages but
	// every HoldOut-th and evaluates it on those (Summary.HeldOut).
	HoldOut int
	// Date is the training date recorded in the model; default today
	// (UTC).
	Date time.Time
}

func (o *TrainOptions) defaults() {
	if o.Epochs <= 0 {
		o.Epochs = 30
	}
	if o.LearningRate <= 0 {
		o.LearningRate = 6
	}
	if o.L2 <= 0 {
		o.L2 = 1e-5
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.HoldProbability <= 0 {
		o.HoldProbability = DefaultHoldProbability
	}
	if o.Date.IsZero() {
		o.Date = time.Now()
	}
}

// ErrNoExamples: training needs both ham and spam.
var ErrNoExamples = errors.New("training needs at least one ham and one spam message")

// Train trains a model on the messages added.
func (t *Trainer) Train(o TrainOptions) (*Model, error) {
	o.defaults()
	if !(o.HoldProbability < 1) {
		return nil, fmt.Errorf("hold probability %v: want between 0 and 1", o.HoldProbability)
	}
	if t.ham == 0 || t.spam == 0 {
		return nil, fmt.Errorf("%d ham, %d spam: %w", t.ham, t.spam, ErrNoExamples)
	}
	var heldOut *Evaluation
	if o.HoldOut >= 2 {
		var train, test []example
		for i, ex := range t.examples {
			if i%o.HoldOut == o.HoldOut-1 {
				test = append(test, ex)
			} else {
				train = append(train, ex)
			}
		}
		w, bias := fit(train, t.buckets, o)
		e := evaluate(test, w, bias, o.HoldProbability)
		heldOut = &e
	}
	w, bias := fit(t.examples, t.buckets, o)
	weights := make([]float32, len(w))
	nonzero := 0
	for i, x := range w {
		weights[i] = float32(x)
		if weights[i] != 0 {
			nonzero++
		}
	}
	s := Summary{
		Tokenizer: TokenizerVersion, Buckets: t.buckets,
		Ham: t.ham, Spam: t.spam, Trained: o.Date.UTC().Format(time.DateOnly),
		HoldProbability: o.HoldProbability, Bias: bias,
		Epochs: o.Epochs, L2: o.L2, Features: nonzero,
		HeldOut: heldOut,
	}
	m := newModel(s, weights)
	// The training figures come from the float32 weights as stored.
	m.summary.Training = m.evaluate(t.examples)
	return m, nil
}

// fit runs the stochastic gradient descent of L2-regularised logistic
// regression over binary features and returns the weights and the bias.
func fit(examples []example, buckets int, o TrainOptions) ([]float64, float64) {
	w := make([]float64, buckets)
	bias := 0.0
	order := make([]int, len(examples))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	for epoch := range o.Epochs {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		rate := o.LearningRate / float64(1+epoch)
		for _, i := range order {
			ex := &examples[i]
			x := featureScale(len(ex.features))
			z := 0.0
			for _, f := range ex.features {
				z += w[f]
			}
			z = bias + x*z
			g := 1 / (1 + math.Exp(-z))
			if ex.spam {
				g--
			}
			for _, f := range ex.features {
				w[f] -= rate * (g*x + o.L2*w[f])
			}
			bias -= rate * g
		}
	}
	return w, bias
}

// evaluate counts how float64 weights flag examples at probability p.
func evaluate(examples []example, w []float64, bias, p float64) Evaluation {
	var e Evaluation
	for _, ex := range examples {
		z := 0.0
		for _, f := range ex.features {
			z += w[f]
		}
		z = bias + featureScale(len(ex.features))*z
		e.count(ex.spam, 1/(1+math.Exp(-z)) >= p)
	}
	return e
}

func (e *Evaluation) count(spam, flagged bool) {
	switch {
	case spam:
		e.Spam++
		if flagged {
			e.SpamFlagged++
		}
	default:
		e.Ham++
		if flagged {
			e.HamFlagged++
		}
	}
}

// evaluate counts how the model flags examples at its hold probability.
func (m *Model) evaluate(examples []example) Evaluation {
	var e Evaluation
	for _, ex := range examples {
		e.count(ex.spam, m.probability(ex.features) >= m.summary.HoldProbability)
	}
	return e
}

// featureScale is the value of each of a message's n features: 1/sqrt(n),
// so that a long message does not weigh more than a short one.
func featureScale(n int) float64 { return 1 / math.Sqrt(float64(max(n, 1))) }
