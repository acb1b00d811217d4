package punch

import (
	"context"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh/natmap"
)

// QUICOffer adds a console's QUIC mapping to the addresses libp2p's
// hole-punching service answers a peer's punch with.
//
// A console reaches its coordinator and relays over TCP (a console whose
// network drops UDP must not wait for a QUIC relay hop), so identify tells
// it TCP mappings only and libp2p's service would offer no QUIC address.
// QUICOffer learns one aside: when a trusted peer (the coordinator, a
// relay) has completed identify, it makes one QUIC flow from the listening
// port to it (ObserveQUIC's flow: dialled with the QUIC transport, asked
// identify's question, closed; not added to the swarm), in the background,
// at most once per observer and maxOfferObservers in all. The punch
// offers the mapping once one observation is in, or several that agree
// (quicAddr); until then, and when UDP does not get out, it offers what it
// did before, so nothing waits for QUIC.
type QUICOffer struct {
	mu      sync.Mutex
	flows   []natmap.Observation
	asked   map[peer.ID]bool
	trusted func(peer.ID) bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// maxOfferObservers bounds the QUIC flows a QUICOffer makes: two tell
// whether the mapping depends on the destination.
const maxOfferObservers = 2

// NewQUICOffer returns a QUICOffer that knows no mapping yet. Pass
// Option() to the host's hole-punching service, then Start it.
func NewQUICOffer() *QUICOffer {
	o := &QUICOffer{asked: map[peer.ID]bool{}, trusted: func(peer.ID) bool { return false }}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	return o
}

// Option is the hole-punching service's option that makes it offer o's
// QUIC mapping.
func (o *QUICOffer) Option() holepunch.Option { return holepunch.WithAddrFilter(o) }

// Start makes o observe h's QUIC mapping through the peers trusted
// accepts as they connect (and those already identified). trusted is
// called from o's goroutines.
func (o *QUICOffer) Start(h host.Host, trusted func(peer.ID) bool) error {
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		return err
	}
	o.mu.Lock()
	o.trusted = trusted
	o.mu.Unlock()
	o.wg.Go(func() {
		defer sub.Close()
		for {
			select {
			case <-o.ctx.Done():
				return
			case e := <-sub.Out():
				if id, ok := e.(event.EvtPeerIdentificationCompleted); ok {
					o.maybeObserve(h, id.Peer)
				}
			}
		}
	})
	for _, id := range h.Network().Peers() {
		o.maybeObserve(h, id)
	}
	return nil
}

// maybeObserve starts one QUIC observation through from, when it is
// trusted, was not asked yet, and fewer than maxOfferObservers were.
func (o *QUICOffer) maybeObserve(h host.Host, from peer.ID) {
	o.mu.Lock()
	trusted := o.trusted
	if o.asked[from] || len(o.asked) >= maxOfferObservers || o.ctx.Err() != nil {
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	if !trusted(from) {
		return
	}
	if len(observersFor(h, func(id peer.ID) bool { return id == from }, "udp")) == 0 {
		return // no public QUIC address of from, or a QUIC connection to it
	}
	o.mu.Lock()
	if o.asked[from] || len(o.asked) >= maxOfferObservers || o.ctx.Err() != nil {
		o.mu.Unlock()
		return
	}
	o.asked[from] = true
	o.wg.Add(1)
	o.mu.Unlock()
	go func() {
		defer o.wg.Done()
		flows, err := ObserveQUIC(o.ctx, h, func(id peer.ID) bool { return id == from })
		if err != nil {
			return
		}
		o.mu.Lock()
		o.flows = append(o.flows, flows...)
		slices.SortStableFunc(o.flows, func(a, b natmap.Observation) int { return a.At.Compare(b.At) })
		o.mu.Unlock()
	}()
}

// Addr is the QUIC address o offers now, nil for none.
func (o *QUICOffer) Addr() ma.Multiaddr {
	o.mu.Lock()
	defer o.mu.Unlock()
	return quicAddr(o.flows)
}

// FilterLocal adds the QUIC mapping, when known, to what the service
// offers remote.
func (o *QUICOffer) FilterLocal(_ peer.ID, addrs []ma.Multiaddr) []ma.Multiaddr {
	q := o.Addr()
	if q == nil || slices.ContainsFunc(addrs, q.Equal) {
		return addrs
	}
	return append(slices.Clone(addrs), q)
}

// FilterRemote keeps what the remote offered.
func (o *QUICOffer) FilterRemote(_ peer.ID, addrs []ma.Multiaddr) []ma.Multiaddr { return addrs }

// Close stops o's observations and waits for them.
func (o *QUICOffer) Close() {
	o.mu.Lock()
	o.cancel()
	o.mu.Unlock()
	o.wg.Wait()
}
