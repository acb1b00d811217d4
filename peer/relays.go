package peer

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
)

// A peer keeps reservations on the site's relays (two when there are two),
// so consoles that cannot reach it directly reach it through one; libp2p's
// hole punching (DCUtR) then tries to turn such a relayed connection into a
// direct one.

// Reservation timing.
const (
	maxReservations  = 2
	reserveCheck     = 30 * time.Second
	renewBefore      = 2 * time.Minute
	reserveTimeout   = 15 * time.Second
	reserveRetryBase = time.Second
)

// reserver keeps reservations on the relays the coordinator names. A
// reservation lives as long as the connection to its relay: when that
// connection ends (the relay restarted, or the network failed) the
// reservation is gone with it, and the reserver makes a new one at once
// (backing off while the relay is away) instead of at the old one's end.
type reserver struct {
	d       *Daemon
	mu      sync.Mutex
	relays  []peer.AddrInfo
	expires map[peer.ID]time.Time
	changed chan struct{}
}

// watch drops a reservation when the last connection to its relay ends,
// until stop returns.
func (r *reserver) watch() (stop func()) {
	n := &network.NotifyBundle{DisconnectedF: func(nw network.Network, c network.Conn) {
		id := c.RemotePeer()
		if nw.Connectedness(id) == network.Connected {
			return
		}
		r.mu.Lock()
		_, held := r.expires[id]
		delete(r.expires, id)
		r.mu.Unlock()
		if !held {
			return
		}
		r.d.log.Info("relay connection lost; reserving again", "relay", id)
		r.recordHeld(time.Now())
		r.poke()
	}}
	r.d.host.Network().Notify(n)
	return func() { r.d.host.Network().StopNotify(n) }
}

// isRelay reports whether id is one of the site's relays.
func (r *reserver) isRelay(id peer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.relays, func(i peer.AddrInfo) bool { return i.ID == id })
}

// poke makes run look at the reservations now.
func (r *reserver) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func newReserver(d *Daemon) *reserver {
	return &reserver{d: d, expires: map[peer.ID]time.Time{}, changed: make(chan struct{}, 1)}
}

// setRelays replaces the relay list (from a welcome or an update).
func (r *reserver) setRelays(raw [][]byte) {
	infos, err := peer.AddrInfosFromP2pAddrs(mesh.DecodeAddrs(raw)...)
	if err != nil {
		r.d.log.Warn("relay addresses", "error", err)
		return
	}
	r.mu.Lock()
	r.relays = infos
	r.mu.Unlock()
	r.poke()
}

// run renews reservations until ctx ends. After a failure (a relay that
// does not know us yet refuses until its next ACL refresh) it tries again
// soon, backing off, rather than at the next periodic check.
//
// Its waits are on wall time, not the daemon's clock: they follow the
// reservations' expirations, which are the relay's wall time (a manual
// clock moved by days must not make the peer think them over).
func (r *reserver) run(ctx context.Context) {
	defer r.watch()()
	retry := reserveRetryBase
	for {
		wait := reserveCheck
		if !r.reserveDue(ctx) {
			wait, retry = retry, min(2*retry, reserveCheck)
		} else {
			retry = reserveRetryBase
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-r.changed:
			t.Stop()
		}
	}
}

// reserveDue reserves on relays without a reservation (or close to its
// end), at most maxReservations held at once. It reports whether every
// attempt it made succeeded.
func (r *reserver) reserveDue(ctx context.Context) (ok bool) {
	ok = true
	r.mu.Lock()
	relays := append([]peer.AddrInfo(nil), r.relays...)
	r.mu.Unlock()
	now := time.Now()
	good := func(id peer.ID) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.expires[id].After(now.Add(renewBefore))
	}
	held := 0
	for _, info := range relays {
		if good(info.ID) {
			held++
		}
	}
	for _, info := range relays {
		if held >= maxReservations || ctx.Err() != nil {
			return ok
		}
		if good(info.ID) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, reserveTimeout)
		rsvp, err := client.Reserve(rctx, r.d.host, info)
		cancel()
		if err != nil {
			ok = false
			r.d.log.Info("relay reservation failed", "relay", info.ID, "error", err)
			continue
		}
		r.mu.Lock()
		r.expires[info.ID] = rsvp.Expiration
		r.mu.Unlock()
		held++
		r.recordHeld(now)
		r.d.log.Info("relay reservation", "relay", info.ID, "until", rsvp.Expiration.UTC().Format(time.RFC3339))
	}
	return ok
}

// recordHeld writes the relays with a live reservation into the state, for
// `peer status`.
func (r *reserver) recordHeld(now time.Time) {
	var held []string
	r.mu.Lock()
	defer r.mu.Unlock() // held while writing, so two writers land in order
	for id, exp := range r.expires {
		if exp.After(now) {
			held = append(held, id.String())
		}
	}
	sort.Strings(held)
	r.d.updateState(func(s *State) { s.Relays = held })
}
