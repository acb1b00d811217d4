package console

import (
	"context"
	"net"
	"sync"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// ForwardTarget is where the peer connects a forwarded connection: the host
// itself with "localhost", or a machine on its network.
type ForwardTarget struct {
	Host string
	Port int
}

// Forwarder carries local TCP connections through one peer, like ssh -L:
// one forward channel per connection, all under one grant. When the peer
// refuses the grant — the connection it was bound to went away
// (grant_invalid), its open-channel bound passed (grant_expired), or the
// coordinator withdrew it (grant_revoked) — the forwarder asks the
// coordinator for a fresh grant once and opens the channel again, so a
// long-running forward needs no attention while its technician may still
// jump; one who may not gets the coordinator's refusal.
type Forwarder struct {
	// OnConnect, when set, is called for each connection carried, with how
	// the console reaches the peer.
	OnConnect func(conn net.Conn, to ForwardTarget, path Path)
	// OnError, when set, is called with each connection that could not be
	// carried or ended in error.
	OnError func(conn net.Conn, err error)
	// NoBulk keeps every connection on a channel of the session: no bulk
	// connection of its own even where the peer offers one (see Forward).
	NoBulk bool

	mu sync.Mutex
	j  *Jump
}

// NewForwarder asks the coordinator for the first grant to forward through
// the peer ref names.
func NewForwarder(ctx context.Context, c *Client, ref string) (*Forwarder, error) {
	j, err := c.Jump(ctx, ref, grant.Forward)
	if err != nil {
		return nil, err
	}
	return ForwardThrough(j), nil
}

// ForwardThrough forwards under j's grant (one for grant.Forward), and
// under fresh grants like it (Jump.Renew) when the peer refuses j's.
func ForwardThrough(j *Jump) *Forwarder { return &Forwarder{j: j} }

// Jump is the grant in use now.
func (f *Forwarder) Jump() *Jump {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.j
}

// refresh replaces the jump stale with a fresh one, unless another
// connection already did (then it returns that one), and reports how the
// old one connected.
func (f *Forwarder) refresh(ctx context.Context, stale *Jump) (*Jump, error) {
	if cur := f.Jump(); cur != stale {
		return cur, nil
	}
	j, err := stale.Renew(ctx)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	old := f.j
	if old != stale { // another connection refreshed meanwhile: keep its jump
		f.mu.Unlock()
		return old, nil
	}
	f.j = j
	f.mu.Unlock()
	old.ReportPath(context.WithoutCancel(ctx))
	return j, nil
}

// Serve accepts connections on ln and carries each to to, until ln is
// closed or ctx ends; it then waits for the connections it carries.
func (f *Forwarder) Serve(ctx context.Context, ln net.Listener, to ForwardTarget) {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			if err := f.Carry(ctx, conn, to); err != nil && f.OnError != nil {
				f.OnError(conn, err)
			}
		}()
	}
}

// Carry opens a channel for conn and copies both ways until both
// directions end (see Forward); it closes conn.
func (f *Forwarder) Carry(ctx context.Context, conn net.Conn, to ForwardTarget) error {
	defer conn.Close()
	open := &pb.ChannelOpen{Kind: &pb.ChannelOpen_Forward{Forward: &pb.ForwardOpen{Host: to.Host, Port: uint32(to.Port), Bulk: !f.NoBulk}}}
	j := f.Jump()
	ch, err := j.Open(ctx, open)
	if catalog.HasCode(err, catalog.CodeGrantInvalid) || catalog.HasCode(err, catalog.CodeGrantExpired) || catalog.HasCode(err, catalog.CodeGrantRevoked) {
		if j, err = f.refresh(ctx, j); err == nil {
			ch, err = j.Open(ctx, open)
		}
	}
	if err != nil {
		return err
	}
	if f.OnConnect != nil {
		f.OnConnect(conn, to, j.Path())
	}
	_, _, err = Forward(ctx, ch, conn)
	return err
}

// Close reports how the current grant's session connected.
func (f *Forwarder) Close(ctx context.Context) {
	if j := f.Jump(); j != nil {
		j.ReportPath(context.WithoutCancel(ctx))
	}
}
