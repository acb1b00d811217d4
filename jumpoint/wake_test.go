package jumpoint_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

// TestJumpointWakeOrders: a jumpoint carries out the site's wake order (a
// passive peer's command forwarded to its port, here a UDP socket of the
// test on loopback) and reports what it sent. A stranger connected to the
// jumpoint, holding a command the site really signed, gets its stream reset
// and nothing is sent; the site's order with a command another key signed
// is refused with wake_failed.
func TestJumpointWakeOrders(t *testing.T) {
	s := coordinatortest.New(t, coordinatortest.MemberLogin)
	j := runJumpoint(t, jumpointConfig(t, s, "j-wake"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	port, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	key, err := mesh.LoadKeyFile(filepath.Join(s.DataDir(), "site.key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := mesh.NewKeySigner(key)
	if err != nil {
		t.Fatal(err)
	}
	target := newHost(t, mesh.HostConfig{}).ID() // a passive peer's ID
	command := func(signer mesh.Signer) *pb.WakeCommand {
		cmd, err := wake.Sign(signer, &pb.WakeBody{TargetId: []byte(target), ExpiresUnixMillis: time.Now().Add(wake.MaxValidity).UnixMilli(),
			PassiveAddrs: []string{port.LocalAddr().String()}})
		if err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	stranger := newHost(t, mesh.HostConfig{})
	if err := stranger.Connect(ctx, peer.AddrInfo{ID: j.ID(), Addrs: s.Coord.Host().Peerstore().Addrs(j.ID())}); err != nil {
		t.Fatalf("stranger connecting to the jumpoint: %v", err)
	}
	if report, err := wake.Order(ctx, stranger, j.ID(), command(signer)); err == nil || report != nil {
		t.Fatalf("stranger's order: report %v, err %v; want the stream reset, no report", report, err)
	}
	otherKey, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := mesh.NewKeySigner(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	report, err := wake.Order(ctx, s.Coord.Host(), j.ID(), command(other))
	if !catalog.HasCode(err, catalog.CodeWakeFailed) || len(report.GetSent()) != 0 {
		t.Fatalf("site's order with another key's command: report %v, err %v; want wake_failed, nothing sent", report, err)
	}

	good := command(signer)
	report, err = wake.Order(ctx, s.Coord.Host(), j.ID(), good)
	if err != nil || len(report.GetSent()) == 0 {
		t.Fatalf("site's order: report %v, err %v", report, err)
	}
	// The first datagram on the port is the site's order: the refused ones
	// sent nothing.
	buf := make([]byte, 2*wake.MaxCommand)
	_ = port.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, _, err := port.ReadFrom(buf)
	if err != nil {
		t.Fatalf("reading the forwarded command: %v", err)
	}
	got, err := wake.Decode(buf[:n])
	if err != nil || !proto.Equal(got, good) {
		t.Fatalf("forwarded %x (%v); want the site's command", buf[:n], err)
	}
}
