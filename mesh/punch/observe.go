package punch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	identifypb "github.com/libp2p/go-libp2p/p2p/protocol/identify/pb"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	mss "github.com/multiformats/go-multistream"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/natmap"
)

// A fresh observation: one more TCP flow from the listening port to a
// trusted observer, to learn where the NAT maps a new flow now.
//
// identify tells the mapping of each connection once, when it opens; a
// peer holds one TCP connection (to the coordinator; relays are reached
// over QUIC), so one observation is all it has, and one cannot tell an
// endpoint-independent NAT from one that allocates the next port for each
// new flow. libp2p cannot open a second connection to a peer it is
// connected to, so the flow is dialled with a TCP transport of its own
// (flowTransport: the listening port, a key made for the flow), asked
// identify's question and closed: the observer is not added to the swarm,
// and the observer does not take the flow for a connection to this host.
const (
	observeTimeout = 3 * time.Second
	observeMaxMsg  = 8 << 10 // identify's own bound on a signed message
)

// dialingNetwork is what a swarm offers beyond network.Network.
type dialingNetwork interface {
	TransportForDialing(ma.Multiaddr) transport.Transport
}

// maxLearn bounds the fresh observations made to classify the NAT before
// any punch needs it.
const maxLearn = 3

// maybeLearn makes, in the background, the second observation that tells
// the NAT's kind, once a trusted observer has told the first and another
// trusted peer (a relay, reached over QUIC) is there to ask: so that a
// punch through an endpoint-independent NAT need not wait for it.
func (p *Puncher) maybeLearn(from peer.ID) {
	if !p.trusted(from) {
		return
	}
	p.mu.Lock()
	if p.learning || p.learnt >= maxLearn || len(p.flows) == 0 || natmap.Classify(p.flows).Kind != natmap.Unknown || p.ctx.Err() != nil {
		p.mu.Unlock()
		return
	}
	p.learning = true
	p.learnt++
	p.mu.Unlock()
	p.wg.Go(func() {
		err := p.observeFresh(p.ctx)
		p.mu.Lock()
		p.learning = false
		if errors.Is(err, errNoObserver) {
			p.learnt-- // not a try: wait for another trusted peer
		}
		kind := natmap.Classify(p.flows).Kind
		p.mu.Unlock()
		p.log.Debug("hole punching: the NAT's mapping", "kind", kind, "error", err)
	})
}

// sequential reports whether the flows seen show a sequential NAT: one
// counter for every flow of the host, so a flow from any port tells where
// it stands.
func (p *Puncher) sequential() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return natmap.Classify(p.flows).Kind == natmap.Sequential
}

// needFresh reports whether a punch should observe afresh first: when the
// flows seen do not yet show an endpoint-independent or random mapping,
// and always for a sequential one (its next port moves with time). p.mu is
// not held.
func (p *Puncher) needFresh() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.flows) == 0 || !p.predicting() {
		return false // nothing seen: no public TCP mapping to punch with; or the site predicts no ports
	}
	switch natmap.Classify(p.flows).Kind {
	case natmap.EndpointIndependent, natmap.Random:
		return false
	}
	return true
}

// observeFresh makes one new TCP flow from the listening port to a trusted
// observer and notes the mapping it reports.
func (p *Puncher) observeFresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, observeTimeout)
	defer cancel()
	var errs []error
	for _, o := range p.observers() {
		tr, err := flowTransport(p.h, o.Addrs[0])
		if err != nil {
			return fmt.Errorf("no fresh observation: %w", err)
		}
		obs, opened, err := askObserved(ctx, tr, o)
		if err == nil && !p.listening(opened.local) && !p.sequential() {
			// The port is busy towards o (an earlier fresh observation
			// in TIME_WAIT): the NAT's mapping of another port says
			// nothing about ours — unless the NAT is known to count
			// flows, whatever port they leave from.
			err = fmt.Errorf("the flow left from %v, not the listening port", opened.local)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o.ID, err))
			continue
		}
		if !manet.IsPublicAddr(obs) {
			continue
		}
		p.mu.Lock()
		p.flows = noteFlowAt(p.flows, opened.remote, obs, opened.at)
		p.seen(o.ID)
		p.mu.Unlock()
		p.natChanged()
		return nil
	}
	if len(errs) == 0 {
		return errNoObserver
	}
	return fmt.Errorf("no fresh observation: %w", errors.Join(errs...))
}

// errNoObserver: no trusted peer to ask for a fresh observation.
var errNoObserver = errors.New("no trusted peer to observe a fresh flow")

type openedFlow struct {
	local, remote ma.Multiaddr
	at            time.Time
}

// listening reports whether a is from one of the host's TCP listening ports.
func (p *Puncher) listening(a ma.Multiaddr) bool {
	_, port := transportPort(a)
	return slices.ContainsFunc(p.h.Network().ListenAddresses(), func(l ma.Multiaddr) bool {
		q, lp := transportPort(l)
		return q == "tcp" && lp == port
	})
}

// observers are the trusted peers this host is connected to, with a public
// TCP address each, and none it has a TCP connection to: a second flow
// between the same two addresses and ports cannot exist, and the dialer
// would leave from another port.
func (p *Puncher) observers() []peer.AddrInfo {
	var out []peer.AddrInfo
	for _, id := range p.h.Network().Peers() {
		if !p.trusted(id) || slices.ContainsFunc(p.h.Network().ConnsToPeer(id), func(c network.Conn) bool {
			q, _ := transportPort(c.RemoteMultiaddr())
			return q == "tcp" && !mesh.IsCircuit(c.RemoteMultiaddr())
		}) {
			continue
		}
		for _, a := range p.h.Peerstore().Addrs(id) {
			if q, _ := transportPort(a); q == "tcp" && manet.IsPublicAddr(a) && !isWebsocket(a) {
				out = append(out, peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{a}})
				break
			}
		}
	}
	return out
}

func isWebsocket(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_WS)
	return err == nil
}

// askObserved dials o over tr (from the listening port: the TCP transport
// reuses it; a fresh TCP observation's is flowTransport), asks identify,
// and returns the address o saw us at.
func askObserved(ctx context.Context, tr transport.Transport, o peer.AddrInfo) (ma.Multiaddr, openedFlow, error) {
	c, err := tr.Dial(ctx, o.Addrs[0], o.ID)
	if err != nil {
		return nil, openedFlow{}, err
	}
	defer c.Close()
	opened := openedFlow{local: c.LocalMultiaddr(), remote: c.RemoteMultiaddr(), at: time.Now()}
	s, err := c.OpenStream(ctx)
	if err != nil {
		return nil, opened, err
	}
	defer s.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(d)
	}
	if err := mss.SelectProtoOrFail(identify.ID, s); err != nil {
		return nil, opened, err
	}
	var msg identifypb.Identify
	if err := pbio.NewDelimitedReader(s, observeMaxMsg).ReadMsg(&msg); err != nil {
		return nil, opened, fmt.Errorf("reading identify: %w", err)
	}
	obs, err := ma.NewMultiaddrBytes(msg.GetObservedAddr())
	if err != nil {
		return nil, opened, fmt.Errorf("observed address: %w", err)
	}
	return obs, opened, nil
}
