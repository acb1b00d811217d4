package punch

import (
	"net/netip"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Port-mapping probing (mesh/probe) for the pairs a punch cannot open: one
// side behind a NAT that maps every destination to a new random port, the
// other behind one that keeps a single mapping. The site's switch is the
// coordinator's nat-probing setting (told to peers in their welcome); the
// console's public IP comes from the grant it showed (JumpGrantBody
// console_ip, as the coordinator saw it), and probing never runs towards
// any other address.

// WithProbing makes the puncher ask, before each probe, whether the site
// lets it probe. Without it, it may. on must be quick (an atomic load).
func WithProbing(on func() bool) Option { return func(p *Puncher) { p.probing = on } }

// WithGranted tells the puncher, for a remote, the public IP the
// coordinator saw it at in a grant the remote showed this host and that
// is still open (grant.Gate.ConsoleIP); ok false when the remote showed
// none. Without it, the puncher never probes.
func WithGranted(f func(remote peer.ID) (ip netip.Addr, ok bool)) Option {
	return func(p *Puncher) { p.granted = f }
}

// mayProbe reports whether the site lets the puncher probe.
func (p *Puncher) mayProbe() bool { return p.granted != nil && (p.probing == nil || p.probing()) }
