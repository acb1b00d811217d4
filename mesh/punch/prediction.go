package punch

// The site's switch for port prediction (the coordinator's nat-prediction
// setting, told to peers in their welcome).
//
// With prediction off the puncher offers what its trusted observers saw,
// as it did before natmap: no predicted ports, and no fresh observation
// before a punch (it serves the prediction only). The one background
// observation that tells the NAT's kind (maybeLearn, at most maxLearn
// flows to the site's own coordinator or relays) still runs: it sends
// nothing towards a console and it feeds the NAT report.

// WithPrediction makes the puncher ask on, before each punch, whether it
// may predict the ports of a sequential NAT. Without it, it always may.
// on is called with the puncher's lock held: it must be quick and must
// not call back into the puncher (an atomic load).
func WithPrediction(on func() bool) Option { return func(p *Puncher) { p.predict = on } }

// predicting reports whether the site lets the puncher predict ports.
func (p *Puncher) predicting() bool { return p.predict == nil || p.predict() }
