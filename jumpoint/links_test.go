package jumpoint_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/jumpoint"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// TestPeersBehindUseLinks: a jumpoint with a link port reports it, the
// installer keys that name it carry it, and a peer installed from such a
// key registers over a link (no libp2p connection to the jumpoint) and is
// reached by a technician through the jumpoint at the port the link named.
// A jumpoint without links (--peer-port -1) still serves its peers over
// streams. The attacks: a link that carries a grant (a technician's
// business: streams only), a stranger's link without an installer key,
// and a link to a target that is not the site.
func TestPeersBehindUseLinks(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	cfg := func(name string, port int) jumpoint.Config {
		return jumpoint.Config{DataDir: filepath.Join(t.TempDir(), name), Coordinator: s.Addr,
			Invite: s.Invite(name, pb.Role_ROLE_JUMPOINT), Listen: []string{"/ip4/127.0.0.1/tcp/0"},
			HTTPAddr: "off", Refresh: 100 * time.Millisecond, Clock: s.Clock, PeerPort: port}
	}
	withLinks := runJumpoint(t, cfg("plant-a", 0))
	streamsOnly := runJumpoint(t, cfg("plant-b", -1))
	if withLinks.LinkPort() == 0 || streamsOnly.LinkPort() != 0 {
		t.Fatalf("link ports %d and %d: want one, and none", withLinks.LinkPort(), streamsOnly.LinkPort())
	}
	linked, key := installBehind(t, s, "plc-01", "plant-a")
	if len(key.Jumpoints) != 1 || key.Jumpoints[0].PeerPort != withLinks.LinkPort() {
		t.Fatalf("key's jumpoints %+v: want plant-a with link port %d", key.Jumpoints, withLinks.LinkPort())
	}
	streamed, key2 := installBehind(t, s, "plc-02", "plant-b")
	if key2.Jumpoints[0].PeerPort != 0 {
		t.Fatalf("a jumpoint without links in a key with link port %d", key2.Jumpoints[0].PeerPort)
	}
	waitOnline(t, s, linked)
	waitOnline(t, s, streamed)
	coordinatortest.Eventually(t, 20*time.Second, "both jumpoints count their peer", func() bool {
		return withLinks.Stats().GetPeersConnected() == 1 && streamsOnly.Stats().GetPeersConnected() == 1
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, name := range []string{"plc-01", "plc-02"} {
		j, err := s.Admin.Jump(ctx, name, grant.Exec)
		if err != nil {
			t.Fatal(err)
		}
		execOn(ctx, t, j, "hello-"+name)
		if p := j.Path(); p.Kind != console.PathJumpoint {
			t.Errorf("%s: path %v, want via a jumpoint", name, p)
		}
		j.Close()
	}

	// The attacks, each on a link of its own.
	linkAddr := fmt.Sprintf("127.0.0.1:%d", withLinks.LinkPort())
	stranger, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	coord := coordinatorTCP(t, s)
	someGrant := &pb.JumpGrant{Body: []byte("x"), Signature: []byte("y")}
	for name, open := range map[string]*pb.TunnelOpen{
		"a grant on a link":             {Target: coord, Grant: someGrant},
		"a stranger to the coordinator": {Target: coord},
		"a stranger elsewhere":          {Target: "127.0.0.1:22"},
	} {
		_, err := tunnel.DialLink(ctx, linkAddr, withLinks.ID(), stranger, nil, open)
		if !catalog.HasCode(err, catalog.CodePermissionDenied) {
			t.Errorf("%s: %v, want permission_denied", name, err)
		}
	}
}

// coordinatorTCP is the coordinator's TCP host:port.
func coordinatorTCP(t *testing.T, s *consoleSite) string {
	t.Helper()
	info, err := peer.AddrInfoFromString(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range info.Addrs {
		if network, hostport, err := manet.DialArgs(a); err == nil && network == "tcp4" {
			return hostport
		}
	}
	t.Fatalf("no TCP address of the coordinator in %s", s.Addr)
	return ""
}
