package control_test

import (
	"context"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// BenchmarkControlRoundTrip measures one control call (new stream, request,
// response) between two real hosts over loopback, on a connection that is
// already up, as between a console and its coordinator.
func BenchmarkControlRoundTrip(b *testing.B) {
	for _, transport := range []string{"tcp", "quic"} {
		b.Run(transport, func(b *testing.B) {
			server, client := newHost(b), newHost(b)
			ctx := testContext(b)
			resp := &pb.Response{Body: &pb.Response_Users{Users: &pb.UserList{Users: []*pb.User{
				{Name: "alice", Role: pb.Role_ROLE_ADMIN}, {Name: "bob", Role: pb.Role_ROLE_TECHNICIAN},
			}}}}
			control.Serve(ctx, server, func(context.Context, peer.ID, *pb.Request) (*pb.Response, error) {
				return resp, nil
			})
			if err := client.Connect(ctx, peer.AddrInfo{ID: server.ID(), Addrs: addrsOf(b, server, transport)}); err != nil {
				b.Fatal(err)
			}
			req := &pb.Request{Body: &pb.Request_UserList{UserList: &pb.Empty{}}}
			// The first call also negotiates the protocol; leave it out.
			if _, err := control.Call(ctx, client, server.ID(), req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := control.Call(ctx, client, server.ID(), req); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if n := len(client.Network().ConnsToPeer(server.ID())); n != 1 {
				b.Fatalf("%d connections after the benchmark, want the one", n)
			}
		})
	}
}
