package console

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// Agentless targets: a host on a jumpoint's network that runs no peer
// (`jumpmesh forward --via JUMPOINT LPORT:HOST:PORT`). The console asks
// the coordinator for a grant naming the jumpoint and the target, reaches
// the jumpoint from its main host (directly or through the site's
// relays), and for each local connection opens a tunnel (mesh/tunnel) to
// the target with the grant in the open; the jumpoint checks the grant
// and its allow list and connects. The stream to the jumpoint is secured
// by libp2p; from the jumpoint on, the connection is the target's own
// protocol, which the jumpoint sees unless that protocol encrypts it (ssh,
// RDP over TLS, HTTPS): unlike a session with a peer, it is not encrypted
// end to end by jumpmesh.

// SetJumpoint changes a jumpoint's agentless policy (administrators) and
// returns its view.
func (c *Client) SetJumpoint(ctx context.Context, req *pb.JumpointSetRequest) (*pb.JumpointView, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_JumpointSet{JumpointSet: req}})
	if err != nil {
		return nil, err
	}
	for _, v := range r.GetJumpoints().GetJumpoints() {
		return v, nil
	}
	return &pb.JumpointView{Name: req.GetName()}, nil
}

// Jumpoints lists the site's jumpoints.
func (c *Client) Jumpoints(ctx context.Context) ([]*pb.JumpointView, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_JumpointList{JumpointList: &pb.Empty{}}})
	return r.GetJumpoints().GetJumpoints(), err
}

// grantMargin is how long before its expiry a grant for an agentless
// target is renewed before a tunnel: the jumpoint checks the grant at
// every tunnel's open.
const grantMargin = 5 * time.Second

// Via is a grant to reach one agentless target through a jumpoint, and
// the means to open tunnels to it. It renews its grant as needed: each
// tunnel needs a grant valid at its open, so a long-running forward asks
// the coordinator again (at most once a grant lifetime, on demand), and
// a technician who lost the right gets the coordinator's refusal.
type Via struct {
	c *Client
	// Jumpoint is the jumpoint's name, Target the target's IP:port, as
	// the first grant names them.
	Jumpoint, Target string
	// ForceRelay reaches the jumpoint only through the site's relays
	// (labs and tests).
	ForceRelay bool

	req *pb.JumpRequest

	mu      sync.Mutex
	grant   *pb.JumpGrant
	renewAt time.Time // on the local clock
	id      peer.ID
	name    string // the jumpoint's
	target  string
	addrs   []ma.Multiaddr
	relays  []ma.Multiaddr
}

// JumpVia asks the coordinator for a grant to reach target (IP:port)
// through the jumpoint via names (name or peer ID).
func (c *Client) JumpVia(ctx context.Context, via, target string) (*Via, error) {
	v := &Via{c: c, req: &pb.JumpRequest{Via: via, Target: target, Capability: grant.Forward}}
	if err := v.renew(ctx); err != nil {
		return nil, err
	}
	v.Jumpoint, v.Target = v.name, v.target
	return v, nil
}

// renew asks for a fresh grant.
func (v *Via) renew(ctx context.Context) error {
	r, err := v.c.do(ctx, &pb.Request{Body: &pb.Request_Jump{Jump: proto.CloneOf(v.req)}})
	if err != nil {
		return err
	}
	jr := r.GetJump()
	body, err := grant.Parse(jr.GetGrant())
	if err != nil {
		return err
	}
	refs := jr.GetJumpoints()
	if len(refs) != 1 || peer.ID(refs[0].GetId()) != peer.ID(body.GetJumpoint()) || body.GetTarget() == "" {
		return catalog.Errorf(catalog.CodeProtocol, "(the coordinator's grant for an agentless target names no jumpoint, or another than its reply)")
	}
	id, err := peer.IDFromBytes(refs[0].GetId())
	if err != nil {
		return catalog.Errorf(catalog.CodeProtocol, "(jumpoint ID from the coordinator: %v)", err)
	}
	life := time.Unix(body.GetExpiresUnix(), 0).Sub(time.Unix(body.GetIssuedUnix(), 0))
	v.mu.Lock()
	defer v.mu.Unlock()
	v.grant, v.renewAt = jr.GetGrant(), time.Now().Add(life-grantMargin)
	v.id, v.addrs, v.relays = id, mesh.DecodeAddrs(refs[0].GetAddrs()), mesh.DecodeAddrs(jr.GetRelays())
	v.name, v.target = refs[0].GetName(), body.GetTarget()
	return nil
}

// current is the grant to open a tunnel with, renewed first when it is
// about to expire.
func (v *Via) current(ctx context.Context) (*pb.JumpGrant, error) {
	v.mu.Lock()
	g, stale := v.grant, !time.Now().Before(v.renewAt)
	v.mu.Unlock()
	if !stale {
		return g, nil
	}
	if err := v.renew(ctx); err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.grant, nil
}

// JumpointID is the jumpoint's peer ID.
func (v *Via) JumpointID() peer.ID {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.id
}

// Dial opens one tunnel to the target. A grant the jumpoint refuses as
// invalid (expired in transit, or the clocks disagree) is renewed once.
func (v *Via) Dial(ctx context.Context) (net.Conn, error) {
	g, err := v.current(ctx)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	id, addrs, relays, target, name := v.id, v.addrs, v.relays, v.target, v.name
	v.mu.Unlock()
	if err := v.c.Connect(ctx, id, addrs, relays, v.ForceRelay); err != nil {
		return nil, catalog.Errorf(catalog.CodeJumpointUnreachable, "(jumpoint %s: %w)", name, err)
	}
	conn, err := tunnel.Dial(ctx, v.c.host, id, &pb.TunnelOpen{Target: target, Grant: g})
	if catalog.HasCode(err, catalog.CodeGrantInvalid) {
		if err = v.renew(ctx); err == nil {
			v.mu.Lock()
			g = v.grant
			v.mu.Unlock()
			conn, err = tunnel.Dial(ctx, v.c.host, id, &pb.TunnelOpen{Target: target, Grant: g})
		}
	}
	return conn, err
}

// ViaForwarder carries local TCP connections to an agentless target, one
// tunnel each.
type ViaForwarder struct {
	Via *Via
	// OnConnect and OnError, when set, are called for each connection
	// carried, and each that could not be carried or ended in error.
	OnConnect func(conn net.Conn)
	OnError   func(conn net.Conn, err error)
}

// Serve accepts connections on ln and carries each, until ln is closed or
// ctx ends; it then waits for the connections it carries.
func (f *ViaForwarder) Serve(ctx context.Context, ln net.Listener) {
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
			if err := f.Carry(ctx, conn); err != nil && f.OnError != nil {
				f.OnError(conn, err)
			}
		}()
	}
}

// Carry opens a tunnel for conn and copies both ways until both
// directions end, passing each end on as a half-close; it closes conn.
func (f *ViaForwarder) Carry(ctx context.Context, conn net.Conn) error {
	t, err := f.Via.Dial(ctx)
	if err != nil {
		conn.Close()
		return err
	}
	return f.CarryOver(ctx, conn, t)
}

// CarryOver is Carry over t, a tunnel already open (Via.Dial): `jump
// --via` opens it before ssh starts, so that the jumpoint's refusal is
// reported as jumpmesh's own error rather than as ssh's lost connection.
// It closes conn and t.
func (f *ViaForwarder) CarryOver(ctx context.Context, conn, t net.Conn) error {
	defer conn.Close()
	defer t.Close()
	if f.OnConnect != nil {
		f.OnConnect(conn)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close(); _ = t.Close() })
	defer stop()
	return splice(conn, t)
}

// splice copies a and b both ways until both directions end.
func splice(a, b net.Conn) error {
	errc := make(chan error, 1)
	go func() { errc <- copyHalf(b, a) }()
	err := copyHalf(a, b)
	return errors.Join(err, <-errc)
}

// copyHalf copies src to dst and then closes dst's write side.
func copyHalf(dst, src net.Conn) error {
	_, err := io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
