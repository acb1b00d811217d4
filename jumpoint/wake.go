package jumpoint

import (
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

// A jumpoint is the waker of the peers behind it (mesh/wake): they sit on
// its network, often with no gateway of their own, so the coordinator asks
// it to send their magic packets, or to forward a passive peer's command
// to its passive port. Only the site is served (the Waker resets any other
// stream unread) and only commands the site signed are carried out. The
// packets go out on the interface that faces the target: the one whose
// subnet holds one of the target's private IPs, else the one toward its
// gateway — never the default route's, which leads away from the isolated
// network.

// wakeOrders are the wake streams being served: Close resets them and
// waits for their handlers.
type wakeOrders struct {
	mu      sync.Mutex
	closed  bool
	streams map[network.Stream]struct{}
	wg      sync.WaitGroup
}

// serveWake registers the wake protocol on the jumpoint's host.
func (j *Jumpoint) serveWake() {
	// The wall clock, as the coordinator signs commands on it.
	w := wake.NewWaker(wake.WakerConfig{Site: j.site.ID, Log: j.log, Toward: towardTarget})
	j.host.SetStreamHandler(wake.Protocol, func(s network.Stream) {
		if !j.wakes.enter(s) {
			_ = s.Reset()
			return
		}
		defer j.wakes.leave(s)
		w.Handle(s)
	})
}

// stopWake takes no new order, ends those being served and waits.
func (j *Jumpoint) stopWake() {
	if j.host != nil {
		j.host.RemoveStreamHandler(wake.Protocol)
	}
	j.wakes.close()
}

func (o *wakeOrders) enter(s network.Stream) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	if o.streams == nil {
		o.streams = map[network.Stream]struct{}{}
	}
	o.streams[s] = struct{}{}
	o.wg.Add(1)
	return true
}

func (o *wakeOrders) leave(s network.Stream) {
	o.mu.Lock()
	delete(o.streams, s)
	o.mu.Unlock()
	o.wg.Done()
}

func (o *wakeOrders) close() {
	o.mu.Lock()
	o.closed = true
	for s := range o.streams {
		_ = s.Reset()
	}
	o.mu.Unlock()
	o.wg.Wait()
}

// towardTarget is the interface facing the body's target: toward one of
// its private IPs, else toward its gateway.
func towardTarget(body *pb.WakeBody) (*net.Interface, error) {
	ifi, err := wake.TowardTargets(body)
	if err == nil {
		return ifi, nil
	}
	if ip, perr := netip.ParseAddr(body.GetGatewayIp()); perr == nil {
		if ifi, gerr := wake.InterfaceToward(ip); gerr == nil {
			return ifi, nil
		}
	}
	return nil, fmt.Errorf("%w (nor toward its gateway %q)", err, body.GetGatewayIp())
}
