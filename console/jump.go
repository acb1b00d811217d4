package console

import (
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// ConnectTimeout bounds reaching a peer after the grant.
const ConnectTimeout = 15 * time.Second

// Jump is a granted access to one peer: the coordinator's signed grant and
// where the peer is. Open one channel per shell, command, forwarded
// connection or copy; the peer accepts the grant on the connection it
// first arrives on for as long as that connection lives.
type Jump struct {
	c     *Client
	Grant *pb.JumpGrant
	Peer  *pb.PeerView
	ID    peer.ID
	Addrs []ma.Multiaddr
}

// Jump asks the coordinator for a grant to use capability on the peer ref
// names (peer ID, unique name, or unique search result).
func (c *Client) Jump(ctx context.Context, ref string, capability uint32) (*Jump, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_Jump{Jump: &pb.JumpRequest{Ref: ref, Capability: capability, Protocol: string(channel.Protocol)}}})
	if err != nil {
		return nil, err
	}
	jr := r.GetJump()
	j := &Jump{c: c, Grant: jr.GetGrant(), Peer: jr.GetPeer(), ID: peer.ID(jr.GetPeer().GetPeer().GetId())}
	for _, b := range jr.GetAddrs() {
		if a, err := ma.NewMultiaddrBytes(b); err == nil {
			j.Addrs = append(j.Addrs, a)
		}
	}
	return j, nil
}

// Connect reaches the peer, within ConnectTimeout.
func (j *Jump) Connect(ctx context.Context) error {
	h := j.c.host
	if h.Network().Connectedness(j.ID) == network.Connected {
		return nil
	}
	addrs := preferTCP(j.Addrs)
	h.Peerstore().AddAddrs(j.ID, addrs, peerstore.TempAddrTTL)
	ctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: j.ID, Addrs: addrs}); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) || len(j.Addrs) == 0 {
			return mesh.Errorf(mesh.CodeConnectTimeout, "(%s at %v: %w)", j.ID, j.Addrs, err)
		}
		return mesh.Errorf(mesh.CodeConnectTimeout, "(%s: %w)", j.ID, err)
	}
	return nil
}

// Open opens a channel of the kind open describes (its grant is filled in).
func (j *Jump) Open(ctx context.Context, open *pb.ChannelOpen) (*channel.Channel, error) {
	if err := j.Connect(ctx); err != nil {
		return nil, err
	}
	open = proto.CloneOf(open)
	open.Grant = j.Grant
	ch, _, err := channel.Open(ctx, j.c.host, j.ID, open)
	return ch, err
}

// Path describes how the console reaches the peer now: "direct <addr>",
// "relayed <addr>", or "not connected".
func (j *Jump) Path() string {
	conns := j.c.host.Network().ConnsToPeer(j.ID)
	if len(conns) == 0 {
		return "not connected"
	}
	c := conns[0]
	if c.Stat().Limited {
		return "relayed " + c.RemoteMultiaddr().String()
	}
	return "direct " + c.RemoteMultiaddr().String()
}

// Audit reads the coordinator's audit log (administrators).
func (c *Client) Audit(ctx context.Context, req *pb.AuditRequest) ([]*pb.AuditEvent, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_Audit{Audit: req}})
	return r.GetAudit().GetEvents(), err
}

// preferTCP keeps only TCP addresses when there are any: sessions are bulk
// byte streams, and TCP with TLS carried several times the throughput of
// QUIC on the same loopback in our measurements (see README).
func preferTCP(addrs []ma.Multiaddr) []ma.Multiaddr {
	var tcp []ma.Multiaddr
	for _, a := range addrs {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			tcp = append(tcp, a)
		}
	}
	if len(tcp) == 0 {
		return addrs
	}
	return tcp
}
