package peer_test

import (
	"context"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// TestPeerProbingWiring: the puncher of a running peer hears the site's
// nat-probing setting (on by default, then as an administrator sets it),
// and learns a console's IP only from a grant that console showed — the IP
// the coordinator signed (loopback here) — not another technician's.
func TestPeerProbingWiring(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "web-01"})
	alice := site.User("alice", pb.Role_ROLE_TECHNICIAN)
	if !peer.ProbingOn(h.d) {
		t.Fatal("probing off before the site said anything")
	}
	if ip, ok := peer.GrantedConsoleIP(h.d, site.Admin.ID()); ok {
		t.Fatalf("console IP %s before any grant", ip)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := site.Admin.Jump(ctx, "web-01", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := j.Open(ctx, execOpen("cat")) // open until the end: the grant stays bound
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if ip, ok := peer.GrantedConsoleIP(h.d, site.Admin.ID()); !ok || !ip.IsLoopback() {
		t.Fatalf("console IP %s, %v after a grant; want the console's loopback address", ip, ok)
	}
	if ip, ok := peer.GrantedConsoleIP(h.d, alice.ID()); ok {
		t.Fatalf("alice showed no grant, yet her console IP is %s", ip)
	}

	for _, on := range []bool{false, true} {
		v := map[bool]string{false: "false", true: "true"}[on]
		if _, err := site.Admin.SetSettings(ctx, map[string]string{"nat-probing": v}); err != nil {
			t.Fatal(err)
		}
		coordinatortest.Eventually(t, 10*time.Second, "probing "+v, func() bool { return peer.ProbingOn(h.d) == on })
	}
}
