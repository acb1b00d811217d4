package console

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/probe"
)

// PingOptions say how to ping a peer.
type PingOptions struct {
	// Count round trips, Interval apart.
	Count    int
	Interval time.Duration
	// ForceRelay starts through a relay even if a direct path exists
	// (hole punching may still upgrade it).
	ForceRelay bool
	// WaitDirect, before the round trips, waits at most this long for a
	// relayed connection to go direct (zero: not at all).
	WaitDirect time.Duration
	// OnConnect, when set, is called once connected, with the peer's name,
	// the path then and how long connecting took.
	OnConnect func(name string, path Path, took time.Duration)
	// OnRound, when set, is called after each round trip.
	OnRound func(PingRound)
}

// PingRound is one round trip and the path it took.
type PingRound struct {
	Seq  int
	RTT  time.Duration
	Path Path
}

// PingResult is what a ping saw.
type PingResult struct {
	Name   string
	ID     peer.ID
	Rounds []PingRound
	// Path is how the connection started and how it ended.
	Path PathSummary
	// RTT is the median round trip on the final path's kind (of every
	// round when the console is no longer connected); zero without rounds.
	RTT time.Duration
	// Probe is the port-mapping probe exchange the peer asked for while
	// the ping ran (nil when none ran).
	Probe *probe.Result
}

// Ping connects to the peer ref names the way a jump does (direct
// addresses first, relays after; no grant is needed) and measures round
// trips with libp2p's ping protocol. When ctx ends between round trips
// the rounds so far are the result.
//
// A peer behind jumpoints is pinged through one, on a tunnel host like a
// jump's; the jumpoint carries tunnels only for a grant, so such a ping
// asks the coordinator for one (no capability: the jump policy still
// applies, and the grant is audited).
func (c *Client) Ping(ctx context.Context, ref string, o PingOptions) (*PingResult, error) {
	v, err := c.Peer(ctx, ref)
	if err != nil {
		return nil, err
	}
	res := &PingResult{Name: v.GetPeer().GetSettings().GetName(), ID: peer.ID(v.GetPeer().GetId())}
	if len(v.GetJumpoints()) > 0 {
		return c.pingThroughJumpoint(ctx, res, o)
	}
	c.notePeerIP(res.ID, v.GetPeerIp())
	w := WatchPath(c.host, res.ID)
	defer w.Stop()
	if err := c.Connect(ctx, res.ID, mesh.DecodeAddrs(v.GetAddrs()), mesh.DecodeAddrs(v.GetRelays()), o.ForceRelay); err != nil {
		return nil, err
	}
	w.Connected()
	if res, err = pingOn(ctx, c.host, w, res, o); err != nil {
		return nil, err
	}
	if pr, ok := c.ProbeResult(res.ID); ok {
		res.Probe = &pr
	}
	return res, nil
}

func (c *Client) pingThroughJumpoint(ctx context.Context, res *PingResult, o PingOptions) (*PingResult, error) {
	j, err := c.JumpFor(ctx, res.ID.String(), Need{})
	if err != nil {
		return nil, err
	}
	defer j.Close()
	j.ForceRelay = o.ForceRelay
	if err := j.Connect(ctx); err != nil {
		return nil, err
	}
	j.mu.Lock()
	w := j.path
	j.mu.Unlock()
	defer w.Stop()
	return pingOn(ctx, j.host(), w, res, o)
}

// pingOn measures the round trips on h, whose path to the peer w watches.
func pingOn(ctx context.Context, h host.Host, w *PathWatch, res *PingResult, o PingOptions) (*PingResult, error) {
	if o.OnConnect != nil {
		o.OnConnect(res.Name, w.Path(), w.Summary().Connect)
	}
	if o.WaitDirect > 0 && w.Path().Kind == PathRelayed {
		w.WaitDirect(ctx, o.WaitDirect)
	}
	var err error
	if res.Rounds, err = pingRounds(ctx, h, w, res, o); err != nil {
		return nil, err
	}
	res.Path = w.Summary()
	res.RTT = medianRTT(res.Rounds, res.Path.Final)
	return res, nil
}

func pingRounds(ctx context.Context, h host.Host, w *PathWatch, res *PingResult, o PingOptions) ([]PingRound, error) {
	rounds := make([]PingRound, 0, o.Count)
	ticker := time.NewTicker(o.Interval)
	defer ticker.Stop()
	for i := 1; i <= o.Count; i++ {
		// One round trip per stream: libp2p's ping stream keeps using the
		// connection it opened on, and the path may have changed since.
		pctx, cancel := context.WithCancel(ctx)
		r, ok := <-ping.Ping(pctx, h, res.ID)
		cancel()
		if !ok {
			return nil, ctx.Err()
		}
		if r.Error != nil {
			return nil, fmt.Errorf("ping %s: %w", res.Name, r.Error)
		}
		rd := PingRound{Seq: i, RTT: r.RTT, Path: w.Path()}
		rounds = append(rounds, rd)
		if o.OnRound != nil {
			o.OnRound(rd)
		}
		if i < o.Count {
			select {
			case <-ctx.Done():
				return rounds, nil
			case <-ticker.C:
			}
		}
	}
	return rounds, nil
}

// medianRTT is the median round trip of the rounds on a path of kind, or
// of every round when kind is PathNone.
func medianRTT(rounds []PingRound, kind PathKind) time.Duration {
	var rtts []time.Duration
	for _, r := range rounds {
		if kind == PathNone || r.Path.Kind == kind {
			rtts = append(rtts, r.RTT)
		}
	}
	if len(rtts) == 0 {
		return 0
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2]
}
