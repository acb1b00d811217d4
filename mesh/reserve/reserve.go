package reserve

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// DefaultMax is how many reservations a Keeper holds at once unless told
// otherwise: two, so a relay restarting leaves the host reachable through
// the other.
const DefaultMax = 2

// Reservation timing.
const (
	// checkEvery is the periodic look at the reservations.
	checkEvery = 30 * time.Second
	// renewBefore is how long before its end a reservation is renewed.
	renewBefore = 2 * time.Minute
	// reserveTimeout bounds one reservation (the dial to the relay and
	// its answer).
	reserveTimeout = 15 * time.Second
	// retryBase is the first wait after a failed reservation; it doubles
	// up to checkEvery.
	retryBase = time.Second
)

// Config is what a Keeper needs besides its host. The zero value holds
// DefaultMax reservations and logs nothing.
type Config struct {
	// Max is how many reservations are held at once (zero: DefaultMax).
	Max int
	// Log receives the reservations made, failed and lost (nil: none).
	Log *slog.Logger
	// Held, when set, is called with the relays that hold a live
	// reservation, sorted by their string form, each time that set may
	// have changed. Calls are serialised (the Keeper's lock is held), so
	// the last one is current; Held must not call the Keeper.
	Held func([]peer.ID)
}

// Keeper keeps reservations on a host's relays. Its methods are safe for
// concurrent use.
type Keeper struct {
	h       host.Host
	max     int
	log     *slog.Logger
	held    func([]peer.ID)
	changed chan struct{}

	mu      sync.Mutex
	relays  []peer.AddrInfo
	expires map[peer.ID]time.Time
}

// New returns a Keeper for h with no relays; it reserves once Run runs
// and SetRelays has given it some.
func New(h host.Host, cfg Config) *Keeper {
	k := &Keeper{h: h, max: cfg.Max, log: cfg.Log, held: cfg.Held, expires: map[peer.ID]time.Time{}, changed: make(chan struct{}, 1)}
	if k.max <= 0 {
		k.max = DefaultMax
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	return k
}

// SetRelays replaces the relay list with relays (each ending in
// /p2p/<relay>; several addresses of one relay are merged) and has Run
// look at the reservations now. A list that does not parse is refused
// whole and the old one kept.
func (k *Keeper) SetRelays(relays []ma.Multiaddr) error {
	infos, err := addrInfos(relays)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.relays = infos
	k.mu.Unlock()
	k.Poke()
	return nil
}

// addrInfos groups /p2p/ addresses by relay, in the order each relay first
// appears (peer.AddrInfosFromP2pAddrs goes through a map, losing it).
func addrInfos(addrs []ma.Multiaddr) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, a := range addrs {
		info, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			return nil, fmt.Errorf("relay address %s: %w", a, err)
		}
		if i := slices.IndexFunc(out, func(o peer.AddrInfo) bool { return o.ID == info.ID }); i >= 0 {
			out[i].Addrs = append(out[i].Addrs, info.Addrs...)
		} else {
			out = append(out, *info)
		}
	}
	return out, nil
}

// IsRelay reports whether id is one of the relays the Keeper was given.
func (k *Keeper) IsRelay(id peer.ID) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.ContainsFunc(k.relays, func(i peer.AddrInfo) bool { return i.ID == id })
}

// Poke has Run look at the reservations now.
func (k *Keeper) Poke() {
	select {
	case k.changed <- struct{}{}:
	default:
	}
}

// Held are the relays with a live reservation now, sorted by their string
// form.
func (k *Keeper) Held() []peer.ID {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.heldLocked(time.Now())
}

// CircuitAddrs are the host's relayed addresses: each address of each
// relay with a live reservation (its TCP ones when it has any: circuits
// through one relay share the dial to it, and sessions prefer TCP),
// followed by /p2p/<relay>/p2p-circuit. A member dials the host through
// one by appending /p2p/<host>.
func (k *Keeper) CircuitAddrs() []ma.Multiaddr {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	var out []ma.Multiaddr
	for _, info := range k.relays {
		if !k.expires[info.ID].After(now) {
			continue
		}
		circuit, err := ma.NewMultiaddr("/p2p/" + info.ID.String() + "/p2p-circuit")
		if err != nil {
			continue
		}
		for _, a := range mesh.PreferTCP(info.Addrs) {
			out = append(out, a.Encapsulate(circuit))
		}
	}
	return out
}

// Run keeps the reservations until ctx ends. After a failure it tries
// again soon, backing off, rather than at the next periodic check.
func (k *Keeper) Run(ctx context.Context) {
	defer k.watch()()
	retry := retryBase
	for {
		wait := checkEvery
		if !k.reserveDue(ctx) {
			wait, retry = retry, min(2*retry, checkEvery)
		} else {
			retry = retryBase
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-k.changed:
			t.Stop()
		}
	}
}

// watch drops a reservation when the last connection to its relay ends,
// until stop returns.
func (k *Keeper) watch() (stop func()) {
	n := &network.NotifyBundle{DisconnectedF: func(nw network.Network, c network.Conn) {
		id := c.RemotePeer()
		if nw.Connectedness(id) == network.Connected {
			return
		}
		k.mu.Lock()
		_, held := k.expires[id]
		delete(k.expires, id)
		k.mu.Unlock()
		if !held {
			return
		}
		k.log.Info("relay connection lost; reserving again", "relay", id)
		k.recordHeld(time.Now())
		k.Poke()
	}}
	k.h.Network().Notify(n)
	return func() { k.h.Network().StopNotify(n) }
}

// reserveDue reserves on relays without a reservation (or close to its
// end), at most max held at once. It reports whether every attempt it
// made succeeded.
func (k *Keeper) reserveDue(ctx context.Context) (ok bool) {
	ok = true
	k.mu.Lock()
	relays := append([]peer.AddrInfo(nil), k.relays...)
	k.mu.Unlock()
	now := time.Now()
	good := func(id peer.ID) bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.expires[id].After(now.Add(renewBefore))
	}
	held := 0
	for _, info := range relays {
		if good(info.ID) {
			held++
		}
	}
	for _, info := range relays {
		if held >= k.max || ctx.Err() != nil {
			return ok
		}
		if good(info.ID) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, reserveTimeout)
		rsvp, err := client.Reserve(rctx, k.h, info)
		cancel()
		if err != nil {
			ok = false
			k.log.Info("relay reservation failed", "relay", info.ID, "error", err)
			continue
		}
		k.mu.Lock()
		k.expires[info.ID] = rsvp.Expiration
		k.mu.Unlock()
		held++
		k.recordHeld(now)
		k.log.Info("relay reservation", "relay", info.ID, "until", rsvp.Expiration.UTC().Format(time.RFC3339))
	}
	return ok
}

// recordHeld tells Config.Held the relays with a live reservation.
func (k *Keeper) recordHeld(now time.Time) {
	if k.held == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock() // held while calling, so two calls land in order
	k.held(k.heldLocked(now))
}

func (k *Keeper) heldLocked(now time.Time) []peer.ID {
	var held []peer.ID
	for id, exp := range k.expires {
		if exp.After(now) {
			held = append(held, id)
		}
	}
	slices.SortFunc(held, func(a, b peer.ID) int { return strings.Compare(a.String(), b.String()) })
	return held
}
