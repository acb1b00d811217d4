package console

import (
	"context"
	"errors"
	"sync"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/probe"
	"github.com/jumpmesh/jumpmesh/mesh/punch"
)

// Client is a technician's console: a site member (its key, its site,
// control calls to the coordinator) that also jumps to peers.
type Client struct {
	*member.Client
	// host is the member's host; sessions open their streams on it.
	host host.Host

	// tunnels are the tunnel hosts of jumps to peers behind jumpoints
	// not closed yet (a forward's renewed jumps): Close closes them.
	mu      sync.Mutex
	tunnels map[*tunnelHost]bool

	// wake is how jumps wake their peer (SetWake, wake.go).
	wake wakeState

	// probing is what port-mapping probing needs of the peers this
	// console reached (probe.go).
	probing probeTargets

	// quic learns the console's QUIC mapping for the hole punches it
	// answers (punch.QUICOffer; hostConfig).
	quic *punch.QUICOffer

	// timing, when set, records the phases of this console's jumps
	// (SetTiming, timing.go).
	timing *Timing

	// peers, when set, are the peers' addresses from the last jumps, dialled
	// while the grant is asked for (SetPeerCache, peercache.go).
	peers *peerCache
}

// Close closes the tunnel hosts of jumps still open, then the console's host.
func (c *Client) Close() error {
	c.mu.Lock()
	open := c.tunnels
	c.tunnels = nil
	c.mu.Unlock()
	var errs []error
	for t := range open {
		errs = append(errs, t.Close())
	}
	if c.quic != nil {
		c.quic.Close()
	}
	return errors.Join(append(errs, c.Client.Close())...)
}

func (c *Client) track(t *tunnelHost) {
	c.mu.Lock()
	if c.tunnels == nil {
		c.tunnels = map[*tunnelHost]bool{}
	}
	c.tunnels[t] = true
	c.mu.Unlock()
}

func (c *Client) untrack(t *tunnelHost) {
	c.mu.Lock()
	delete(c.tunnels, t)
	c.mu.Unlock()
}

// Open loads the console home and starts a libp2p host with the
// technician's key. It does not contact the coordinator yet.
func Open(home string) (*Client, error) { return OpenTimed(home, nil) }

// OpenTimed is Open recording its phases in t (key load, host start) and
// setting t as the client's timing (SetTiming).
func OpenTimed(home string, t *Timing) (*Client, error) {
	if t != nil {
		// Timed apart for --timing only: member.Open reads the same two
		// small files again, from the page cache.
		end := t.Begin("key load")
		if _, err := files(home).LoadConfig(); err == nil {
			_, _ = files(home).LoadKey()
		}
		end()
	}
	end := t.Begin("host start (libp2p, listeners)")
	hc, offer, err := hostConfig()
	if err != nil {
		return nil, err
	}
	m, err := member.Open(files(home), hc)
	if err != nil {
		return nil, err
	}
	c := newClient(m, offer)
	end()
	c.timing = t
	return c, nil
}

// SetTiming makes c record the phases of its jumps in t (nil: not).
func (c *Client) SetTiming(t *Timing) { c.timing = t }

// Login makes (or reuses) the technician's key in home, redeems the invite
// code at the coordinator at addr (a multiaddr ending in /p2p/<site>), and
// records the site in home. On error home keeps only the key.
func Login(ctx context.Context, home, addr, code string) (*Client, *pb.LoginResponse, error) {
	hc, offer, err := hostConfig()
	if err != nil {
		return nil, nil, err
	}
	m, resp, err := member.Login(ctx, files(home), addr, code, hc)
	if err != nil {
		return nil, nil, err
	}
	return newClient(m, offer), resp, nil
}

func newClient(m *member.Client, offer *punch.QUICOffer) *Client {
	c := &Client{Client: m, host: m.Host(), quic: offer}
	c.host.SetStreamHandler(probe.Protocol, c.serveProbe)
	if offer != nil {
		_ = offer.Start(c.host, c.quicObserver) // without it, punches offer TCP only, as before
	}
	return c
}

// hostConfig is the console's host: it listens (on ports the system
// picks) so that hole punching can turn a relayed connection to a peer
// into a direct one, and dials a peer on its own LAN there before
// through a relay (mesh.LANDialRanker). Its hole-punching service offers,
// besides the TCP mappings identify tells, the QUIC mapping the returned
// QUICOffer learns once newClient starts it. A console's host lives for
// one command (ShortLived); the agent's signs a few times more at most.
func hostConfig() (mesh.HostConfig, *punch.QUICOffer, error) {
	listen, err := mesh.ParseMultiaddrs(consoleListen)
	if err != nil {
		return mesh.HostConfig{}, nil, err
	}
	offer := punch.NewQUICOffer()
	return mesh.HostConfig{
		RelayClient: true, ListenAddrs: listen, DialRanker: mesh.LANDialRanker(nil), ShortLived: true,
		Extra: []libp2p.Option{libp2p.EnableHolePunching(offer.Option())},
	}, offer, nil
}

var consoleListen = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1", "/ip6/::/tcp/0", "/ip6/::/udp/0/quic-v1"}
