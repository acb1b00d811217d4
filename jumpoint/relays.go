package jumpoint

import (
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/punch"
	"github.com/jumpmesh/jumpmesh/mesh/reserve"
)

// A jumpoint is often behind a NAT itself (a host on a plant's network
// with a route out), so consoles elsewhere may not reach its addresses.
// It is reachable the way a NATed peer is: it keeps reservations on the
// site's relays (mesh/reserve; the relays are the ACL's site addresses
// that are not the coordinator's), reports the circuits through them
// among its addresses (the coordinator hands them to consoles, and
// consoles also build circuits from the site's relay list), and runs the
// puncher (mesh/punch) so a console's relayed connection turns direct
// when both NATs allow it. A tunnel over a relayed connection is judged
// by the same rules as any other: the relay only carries bytes between
// two site members (its own ACL), the jumpoint decides what they reach.

// logRelays is the log field of the number of relays.
const logRelays = "relays"

// relayTag protects the connections to the relays the jumpoint reserves
// on from its connection manager: a reservation ends with its connection.
const relayTag = "jumpoint-relay"

// relaySet is a list of relays' /p2p/ addresses, as last given to the
// reserver.
type relaySet []ma.Multiaddr

func (r relaySet) equal(o relaySet) bool {
	return slices.EqualFunc(r, o, func(a, b ma.Multiaddr) bool { return a.Equal(b) })
}

// ids are the relays' peer IDs.
func (r relaySet) ids() map[peer.ID]bool {
	out := map[peer.ID]bool{}
	for _, a := range r {
		if info, err := peer.AddrInfoFromP2pAddr(a); err == nil {
			out[info.ID] = true
		}
	}
	return out
}

// startRelaying makes the reserver and starts the puncher on the host.
// The coordinator and the relays are the observers the puncher trusts to
// say what the NAT maps the jumpoint's listening port to. Every change of
// the reservations held asks for an early refresh, so the coordinator
// learns the new circuits within seconds rather than a period.
func (j *Jumpoint) startRelaying() error {
	j.reserver = reserve.New(j.host, reserve.Config{Log: j.log, Held: func([]peer.ID) {
		select {
		case j.stale <- struct{}{}:
		default:
		}
	}})
	p, err := punch.Start(j.host, func(id peer.ID) bool { return id == j.site.ID || j.reserver.IsRelay(id) }, j.log)
	if err != nil {
		return err
	}
	j.puncher = p
	return nil
}

// siteRelays are the relays among an ACL's site addresses: every /p2p/
// address that is neither the coordinator's (the site ID) nor the
// jumpoint's own. Addresses that do not decode are left out (NewACL
// reports them).
func siteRelays(raw [][]byte, site, self peer.ID) relaySet {
	var out relaySet
	for _, a := range mesh.DecodeAddrs(raw) {
		info, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil || info.ID == site || info.ID == self {
			continue
		}
		out = append(out, a)
	}
	return out
}

// setRelays gives the reserver the ACL's relays when they changed, and
// moves the connection manager's protection with them.
func (j *Jumpoint) setRelays(relays relaySet) {
	if j.reserver == nil || relays.equal(j.relays) {
		return
	}
	if err := j.reserver.SetRelays(relays); err != nil {
		j.log.Warn("jumpoint relay addresses", logError, err)
		return
	}
	was, now := j.relays.ids(), relays.ids()
	cm := j.host.ConnManager()
	for id := range now {
		cm.Protect(id, relayTag)
	}
	for id := range was {
		if !now[id] {
			cm.Unprotect(id, relayTag)
		}
	}
	j.relays = relays
	j.log.Info("jumpoint relays", logRelays, len(now))
}

// reported are the addresses the jumpoint reports to the coordinator:
// the advertised ones, then the circuits through the relays it holds a
// reservation on.
func (j *Jumpoint) reported() []ma.Multiaddr {
	out := j.advertised()
	if j.reserver == nil {
		return out
	}
	for _, c := range j.reserver.CircuitAddrs() {
		if !slices.ContainsFunc(out, c.Equal) {
			out = append(out, c)
		}
	}
	return out
}
