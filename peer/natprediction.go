package peer

import "sync/atomic"

// natPrediction is the site's nat-prediction setting as the coordinator's
// last welcome or update told it: whether the puncher may predict the
// ports of a NAT that allocates them in sequence (mesh/punch,
// WithPrediction). It is on until a welcome says off, as for a site whose
// coordinator predates the setting.
type natPrediction struct{ off atomic.Bool }

// on is what the puncher asks before each punch.
func (n *natPrediction) on() bool { return !n.off.Load() }
