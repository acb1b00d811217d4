package control_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func newKey(tb testing.TB) (crypto.PrivKey, peer.ID) {
	tb.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return key, id
}

// TestDirectCallAnswersAsCall: a connection without a host reaches a real
// host's control service as the caller's peer ID, carries several calls,
// returns the handler's errors as Call does, and leaves nothing running
// once closed (TestMain's goleak; the server's host opens its identify
// stream on every connection, which this one resets).
func TestDirectCallAnswersAsCall(t *testing.T) {
	server := newHost(t)
	ctx := testContext(t)
	key, id := newKey(t)
	remotes := make(chan peer.ID, 3)
	users := &pb.UserList{Users: []*pb.User{{Name: "alice", Role: pb.Role_ROLE_ADMIN}}}
	control.Serve(ctx, server, func(_ context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error) {
		remotes <- remote
		if req.GetUserShow() != nil {
			return nil, catalog.Errorf(catalog.CodeUserNotFound, "(%s)", req.GetUserShow().GetName())
		}
		return &pb.Response{Body: &pb.Response_Users{Users: users}}, nil
	})
	c, err := control.DialDirect(ctx, key, server.ID(), server.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		resp, err := c.Call(ctx, &pb.Request{Body: &pb.Request_UserList{UserList: &pb.Empty{}}})
		if err != nil || !proto.Equal(resp.GetUsers(), users) {
			t.Fatalf("call: %v %v", resp, err)
		}
		if r := <-remotes; r != id {
			t.Fatalf("the handler saw %s, want the caller's key %s", r, id)
		}
	}
	_, err = c.Call(ctx, &pb.Request{Body: &pb.Request_UserShow{UserShow: &pb.NameRequest{Name: "zed"}}})
	<-remotes
	if catalog.CodeOf(err) != catalog.CodeUserNotFound || control.NotSent(err) {
		t.Fatalf("handler error: %v", err)
	}
	if conns := server.Network().ConnsToPeer(id); len(conns) != 1 {
		t.Fatalf("server has %d connections to the caller", len(conns))
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDirectRefusesAnotherPeerID: the TLS handshake checks the site's peer
// ID — a stranger listening at the site's address (or a wrong site in a
// console home) is not asked anything; nor is a site offering no TCP
// address, nor one where nothing listens. Every failure says nothing was
// sent, so the caller may go the host's way.
func TestDirectRefusesAnotherPeerID(t *testing.T) {
	server := newHost(t)
	ctx := testContext(t)
	asked := make(chan struct{}, 1)
	control.Serve(ctx, server, func(context.Context, peer.ID, *pb.Request) (*pb.Response, error) {
		asked <- struct{}{}
		return nil, nil
	})
	key, _ := newKey(t)
	_, other := newKey(t)
	cases := map[string]struct {
		site  peer.ID
		addrs []ma.Multiaddr
	}{
		"another peer ID":   {other, server.Addrs()},
		"no TCP address":    {server.ID(), addrsOf(t, server, "quic")},
		"nothing listens":   {server.ID(), []ma.Multiaddr{SilentTCP(t)}},
		"a relayed address": {server.ID(), []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1/p2p/" + other.String() + "/p2p-circuit")}},
		"no address at all": {server.ID(), nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := control.DialDirect(ctx, key, tc.site, tc.addrs)
			if err == nil {
				c.Close()
				t.Fatal("connected")
			}
			if catalog.CodeOf(err) != catalog.CodeCoordinatorDown || !control.NotSent(err) {
				t.Fatalf("got %v, want coordinator_down, not sent", err)
			}
		})
	}
	select {
	case <-asked:
		t.Fatal("the server was asked")
	default:
	}
}

// SilentTCP is a loopback TCP address where nothing listens (a port
// the system gave and took back).
func SilentTCP(t *testing.T) ma.Multiaddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	return ma.StringCast("/ip4/127.0.0.1/tcp/" + port)
}

// TestDirectCoordinatorRepliesBadly: a compromised or broken coordinator's
// reply — a length past MaxMessage (2^40 bytes: allocating it would end
// the test), a body that is not a response, one cut short (at most
// MaxMessage is allocated for what a reply declares), a length that never
// ends — is a catalog error of the call, not a panic; the connection stays
// usable.
func TestDirectCoordinatorRepliesBadly(t *testing.T) {
	server := newHost(t)
	ctx := testContext(t)
	huge := binary.AppendUvarint(nil, 1<<40)
	replies := map[string][]byte{
		"oversized":      append(huge, "x"...),
		"just past max":  binary.AppendUvarint(nil, control.MaxMessage+1),
		"not a response": append(binary.AppendUvarint(nil, 8), bytes.Repeat([]byte{0xff}, 8)...),
		"cut short":      append(binary.AppendUvarint(nil, 1000), "short"...),
		"the limit, cut": append(binary.AppendUvarint(nil, control.MaxMessage), "short"...),
		"endless length": bytes.Repeat([]byte{0x80}, 12),
		"nothing":        nil,
	}
	server.SetStreamHandler(control.Protocol, func(s network.Stream) {
		defer s.Close()
		req := new(pb.Request)
		if err := frame.NewReader(s, nil, control.MaxMessage).ReadMsg(req); err != nil {
			s.Reset()
			return
		}
		_, _ = s.Write(replies[req.GetUserShow().GetName()])
	})
	key, _ := newKey(t)
	c, err := control.DialDirect(ctx, key, server.ID(), server.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name := range replies {
		t.Run(name, func(t *testing.T) {
			resp, err := c.Call(ctx, &pb.Request{Body: &pb.Request_UserShow{UserShow: &pb.NameRequest{Name: name}}})
			if err == nil || resp != nil {
				t.Fatalf("got %v, %v", resp, err)
			}
			if catalog.CodeOf(err) != catalog.CodeCoordinatorDown {
				t.Fatalf("got %v, want coordinator_down", err)
			}
			if strings.HasPrefix(name, "oversized") || strings.HasPrefix(name, "just past") {
				if !errors.Is(err, frame.ErrTooLarge) {
					t.Fatalf("got %v, want the message too large", err)
				}
			}
		})
	}
}
