package peer

import "sync/atomic"

// natProbing is the site's nat-probing setting as the coordinator's last
// welcome or update told it: whether the puncher may probe port mappings
// (mesh/probe; punch.WithProbing) for a console whose grant names the IP
// the coordinator saw it at. It is on until a welcome says off, as for a
// site whose coordinator predates the setting.
type natProbing struct{ off atomic.Bool }

// on is what the puncher asks before each probe exchange.
func (n *natProbing) on() bool { return !n.off.Load() }
