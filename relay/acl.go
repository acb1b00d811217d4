package relay

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// Refusal reasons, the values of the refusals counter's "reason" label.
const (
	ReasonReserveNotMember     = "reserve_not_member"
	ReasonConnectSrcNotMember  = "connect_src_not_member"
	ReasonConnectDestNotMember = "connect_dest_not_member"
)

// ACL decides who may use the relay: the members of the site, as the
// coordinator last listed them. It is go-libp2p's relay ACLFilter.
//
// The relay asks it on every reservation and connect, from many goroutines,
// while the refresher replaces the member set; the set is an immutable map
// behind an atomic pointer, so readers never lock and a swap is all or
// nothing.
type ACL struct {
	members atomic.Pointer[map[peer.ID]struct{}]
	refused *prometheus.CounterVec
	log     *slog.Logger
	// stale is signalled when an unknown party asks to reserve or connect:
	// it may be a host or a technician's device enrolled since the last
	// refresh, so the refresher looks again now instead of making it wait
	// a whole period.
	stale chan struct{}
	// awaitUnknown is how long such a request waits for that refresh
	// before it is judged again (zero: not at all, when no refresher runs).
	awaitUnknown time.Duration
	swapMu       sync.Mutex
	swapped      chan struct{} // closed, and replaced, by every SetMembers
}

// unknownWait bounds the wait of a request by an unknown party: an early
// refresh comes at most minEarlyRefresh after the previous one, plus the
// fetch. A stranger's request is held that long and then refused.
const unknownWait = minEarlyRefresh + time.Second

var _ relayv2.ACLFilter = (*ACL)(nil)

// NewACL makes an ACL with no members (it refuses everyone) and registers
// its refusals counter with reg.
func NewACL(reg prometheus.Registerer, log *slog.Logger) *ACL {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &ACL{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "jumpmesh", Subsystem: "relay", Name: "refusals_total",
			Help: "Reservations and connects refused because a party is not a member of the site, by reason.",
		}, []string{"reason"}),
		log:     log,
		stale:   make(chan struct{}, 1),
		swapped: make(chan struct{}),
	}
	// Every reason shows from the start, at 0, so alerts can use rate().
	for _, r := range []string{ReasonReserveNotMember, ReasonConnectSrcNotMember, ReasonConnectDestNotMember} {
		a.refused.WithLabelValues(r)
	}
	reg.MustRegister(a.refused)
	empty := map[peer.ID]struct{}{}
	a.members.Store(&empty)
	return a
}

// SetMembers replaces the member set at once.
func (a *ACL) SetMembers(ids []peer.ID) {
	m := make(map[peer.ID]struct{}, len(ids))
	for _, id := range ids {
		m[id] = struct{}{}
	}
	a.members.Store(&m)
	a.swapMu.Lock()
	close(a.swapped)
	a.swapped = make(chan struct{})
	a.swapMu.Unlock()
}

// awaitRefresh asks the refresher to fetch the member set now and waits,
// at most awaitUnknown, until a new set is in place.
func (a *ACL) awaitRefresh() {
	if a.awaitUnknown <= 0 {
		return
	}
	a.swapMu.Lock()
	swapped := a.swapped
	a.swapMu.Unlock()
	select {
	case a.stale <- struct{}{}:
	default:
	}
	t := time.NewTimer(a.awaitUnknown)
	defer t.Stop()
	select {
	case <-swapped:
	case <-t.C:
	}
}

// IsMember reports whether id is in the current member set.
func (a *ACL) IsMember(id peer.ID) bool {
	_, ok := (*a.members.Load())[id]
	return ok
}

// Len is the size of the current member set.
func (a *ACL) Len() int { return len(*a.members.Load()) }

// AllowReserve lets only members reserve a slot. An unknown peer waits
// for an early refresh first: it may have enrolled a moment ago.
func (a *ACL) AllowReserve(p peer.ID, addr ma.Multiaddr) bool {
	if a.IsMember(p) {
		return true
	}
	a.awaitRefresh()
	if a.IsMember(p) {
		return true
	}
	a.refuse(ReasonReserveNotMember, p, addr, "")
	return false
}

// AllowConnect lets a member connect to a member. Both ends are checked:
// the destination's reservation was granted under an older member set, and
// the current set, not the reservation, says who may be reached now.
//
// An unknown party waits for an early refresh first, as in AllowReserve: a
// technician's new device connects at once, not a refresh period later.
func (a *ACL) AllowConnect(src peer.ID, srcAddr ma.Multiaddr, dest peer.ID) bool {
	srcOK, destOK := a.pair(src, dest)
	if !srcOK || !destOK {
		a.awaitRefresh()
		srcOK, destOK = a.pair(src, dest)
	}
	switch {
	case !srcOK:
		a.refuse(ReasonConnectSrcNotMember, src, srcAddr, dest)
	case !destOK:
		a.refuse(ReasonConnectDestNotMember, src, srcAddr, dest)
	default:
		return true
	}
	return false
}

// pair looks both parties up in one member set: a swap between the
// lookups must not judge src by one set and dest by another.
func (a *ACL) pair(src, dest peer.ID) (srcOK, destOK bool) {
	members := *a.members.Load()
	_, srcOK = members[src]
	_, destOK = members[dest]
	return srcOK, destOK
}

func (a *ACL) refuse(reason string, p peer.ID, addr ma.Multiaddr, dest peer.ID) {
	a.refused.WithLabelValues(reason).Inc()
	// Strangers may knock often; keep it at debug and skip the work when off.
	if a.log.Enabled(context.Background(), slog.LevelDebug) {
		args := []any{logReason, reason, logPeer, p, logAddr, addr}
		if dest != "" {
			args = append(args, logDest, dest)
		}
		a.log.Debug("relay refused", args...)
	}
}
