package peer

import (
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/reserve"
)

// A peer keeps reservations on the site's relays (two when there are two),
// so consoles that cannot reach it directly reach it through one; hole
// punching (mesh/punch) then tries to turn such a relayed connection into
// a direct one. mesh/reserve keeps them; the peer gives it the relays the
// coordinator names and writes the relays it holds a reservation on into
// its state, for `peer status`.

// newReserver is the peer's reservation keeper.
func newReserver(d *Daemon) *reserve.Keeper {
	return reserve.New(d.host, reserve.Config{Log: d.log, Held: func(held []peer.ID) {
		ids := make([]string, len(held))
		for i, id := range held {
			ids[i] = id.String()
		}
		if len(ids) == 0 {
			ids = nil
		}
		d.updateState(func(s *State) { s.Relays = ids })
	}})
}

// setRelays replaces the relay list (from a welcome or an update).
// The list is kept in state.json for lookupCoordinators.
func (d *Daemon) setRelays(raw [][]byte) {
	addrs := mesh.DecodeAddrs(raw)
	if err := d.reserver.SetRelays(addrs); err != nil {
		d.log.Warn("relay addresses", "error", err)
	}
	strs := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if len(strs) < maxRelayServers*4 {
			strs = append(strs, a.String())
		}
	}
	d.mu.Lock()
	same := slices.Equal(strs, d.state.RelayAddrs)
	d.mu.Unlock()
	if !same && len(strs) > 0 {
		d.updateState(func(s *State) { s.RelayAddrs = strs })
	}
}
