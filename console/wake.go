package console

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Waking peers: `jumpmesh wake`, `--wake` on jump, forward and cp, and the
// automatic wake of a passive peer on every jump.

// DefaultWakeTimeout is how long a jump waits for a peer it woke.
const DefaultWakeTimeout = 2 * time.Minute

// WakePoll is how often WaitOnline asks the coordinator about the peer at
// most; it starts at WakePollFirst and doubles up to it. A passive peer
// is back within a few hundred milliseconds of its wake command and a
// lab machine's peer some 125 ms after the magic packet, so a fixed
// second added up to one to every jump --wake; a sleeping PC takes
// seconds to boot, and by then the coordinator is asked once a second.
const (
	WakePoll      = time.Second
	WakePollFirst = 100 * time.Millisecond
)

// WakeProgressEvery is how often a jump that waits for its peer says so.
const WakeProgressEvery = 10 * time.Second

// Wake asks the coordinator to wake the peer ref names; password is a
// SecureOn password (nil, or 6 bytes: wake.ParsePassword). The response
// names the wakers asked and what each sent.
func (c *Client) Wake(ctx context.Context, ref string, password []byte) (*pb.WakeResponse, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_Wake{Wake: &pb.WakeRequest{Ref: ref, Password: password}}})
	return r.GetWake(), err
}

// WaitProgress is what WaitOnline tells its callback after each look.
type WaitProgress struct {
	Peer    *pb.PeerView
	Waited  time.Duration
	Timeout time.Duration
}

// WaitOnline asks the coordinator about the peer ref names (after
// WakePollFirst, then doubling up to WakePoll) until it is online, for at
// most timeout (and ctx), calling progress (if not nil) after each look. It returns the peer as last seen and how long
// it waited; past timeout the error is wake_timeout.
func (c *Client) WaitOnline(ctx context.Context, ref string, timeout time.Duration, progress func(WaitProgress)) (*pb.PeerView, time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	every := WakePollFirst
	tick := time.NewTimer(every)
	defer tick.Stop()
	var last *pb.PeerView
	for {
		callCtx, cancel := context.WithDeadline(ctx, deadline)
		v, err := c.Peer(callCtx, ref)
		cancel()
		waited := time.Since(start)
		switch {
		case err == nil:
			last = v
			if v.GetStatus() == "online" {
				return v, waited, nil
			}
			if progress != nil {
				progress(WaitProgress{Peer: v, Waited: waited, Timeout: timeout})
			}
		case ctx.Err() != nil:
			return last, waited, ctx.Err()
		case !time.Now().Before(deadline):
			// The look itself ran out of time: the same as still offline.
		default:
			return last, waited, err // not found, no longer visible, coordinator down...
		}
		if !time.Now().Before(deadline) {
			return last, waited, catalog.Errorf(catalog.CodeWakeTimeout, "(waited %s; the peer is %s)",
				timeout, orWord(last.GetStatus(), "unknown"))
		}
		select {
		case <-ctx.Done():
			return last, time.Since(start), ctx.Err()
		case <-tick.C:
			every = min(2*every, WakePoll)
			tick.Reset(every)
		}
	}
}

func orWord(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// WakeOptions is how a jump wakes its peer (SetWake). A passive peer is
// always woken; Offline also wakes one that is offline (--wake).
type WakeOptions struct {
	Offline  bool
	Password []byte
	// Timeout bounds the wait for the peer to come online (0:
	// DefaultWakeTimeout).
	Timeout time.Duration
	// Progress receives one line at a time ("waking web-01 through ...",
	// "waiting for web-01: 12s of 2m0s", "web-01 is online after 14s"),
	// without a newline; nil prints nothing.
	Progress func(line string)
}

// wakeState holds a Client's WakeOptions.
type wakeState struct {
	mu   sync.Mutex
	opts WakeOptions
}

// SetWake sets how this client's jumps wake their peer.
func (c *Client) SetWake(o WakeOptions) {
	c.wake.mu.Lock()
	c.wake.opts = o
	c.wake.mu.Unlock()
}

func (c *Client) wakeOptions() WakeOptions {
	c.wake.mu.Lock()
	defer c.wake.mu.Unlock()
	o := c.wake.opts
	if o.Timeout <= 0 {
		o.Timeout = DefaultWakeTimeout
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	return o
}

// shouldWake says whether a jump refused with err wakes its peer.
func shouldWake(err error, o WakeOptions) bool {
	switch catalog.CodeOf(err) {
	case catalog.CodePeerPassive:
		return true
	case catalog.CodePeerOffline:
		return o.Offline
	}
	return false
}

// wakeForJump wakes the peer ref names and waits until it is online. A
// wake_cooldown means someone woke it moments ago: it waits all the same;
// wake_not_needed means it came online meanwhile.
func (c *Client) wakeForJump(ctx context.Context, ref string, o WakeOptions) error {
	v, err := c.Peer(ctx, ref)
	if err != nil {
		return err
	}
	id := peer.ID(v.GetPeer().GetId()).String()
	name := orWord(v.GetPeer().GetSettings().GetName(), id)
	resp, err := c.Wake(ctx, id, o.Password)
	switch catalog.CodeOf(err) {
	case "":
		o.Progress(fmt.Sprintf("waking %s (%s) through %s", name, resp.GetMethod(), WakerSummary(resp)))
	case catalog.CodeWakeCooldown:
		o.Progress(fmt.Sprintf("%s is already being woken (%v)", name, err))
	case catalog.CodeWakeNotNeeded:
	default:
		return err
	}
	var said time.Duration
	_, took, err := c.WaitOnline(ctx, id, o.Timeout, func(p WaitProgress) {
		if p.Waited-said >= WakeProgressEvery {
			said = p.Waited
			o.Progress(fmt.Sprintf("waiting for %s (%s): %s of %s", name, p.Peer.GetStatus(), p.Waited.Round(time.Second), p.Timeout))
		}
	})
	if err != nil {
		return err
	}
	o.Progress(fmt.Sprintf("%s is online after %s", name, took.Round(100*time.Millisecond)))
	return nil
}

// WakerSummary names who was asked to wake a peer, for one line:
// "web-02 (2 sent), plant-a (jumpoint, failed)", or "the coordinator".
func WakerSummary(r *pb.WakeResponse) string {
	var parts []string
	for _, w := range r.GetWakers() {
		what := fmt.Sprintf("%d sent", len(w.GetSent()))
		if len(w.GetSent()) == 0 && w.GetError() != nil {
			what = "failed"
		}
		if w.GetKind() == "jumpoint" {
			what = "jumpoint, " + what
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", w.GetName(), what))
	}
	if len(r.GetSent()) > 0 {
		parts = append(parts, fmt.Sprintf("the coordinator (%d sent)", len(r.GetSent())))
	}
	if len(parts) == 0 {
		return "nobody"
	}
	return strings.Join(parts, ", ")
}
