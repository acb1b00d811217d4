package peer_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
	"github.com/jumpmesh/jumpmesh/relay"
)

// TestPeerFindsACoordinatorThroughItsRelay (issue 16 part 2: "the
// private DHT finds the others"): a site on etcd served by coordinator a
// alone; a relay, and a peer whose installer key and welcome name only a.
// The peer stops. Coordinator b joins; the relay learns b's address from
// its next ACL answer; a dies. The peer, started again, knows only a's
// address (key and state.json) and the relay the site last named: after
// three failed dials it asks the relay where the site is and comes online
// through b. Without the lookup it dialed a's address until the test's
// deadline.
func TestPeerFindsACoordinatorThroughItsRelay(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (harness_test.go)
	s := newHASite(t, "a")
	key := s.installerNaming("a")
	site := s.coords["a"].LoginAddrs()[0].String()

	inv, err := s.admin.InviteUser(s.ctx(), "relay-1", pb.Role_ROLE_RELAY, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	relayDir := filepath.Join(t.TempDir(), "relay-1")
	r, err := relay.New(context.Background(), relay.Config{DataDir: relayDir, Coordinator: site, Invite: inv.GetCode(),
		Listen: []string{"/ip4/127.0.0.1/tcp/0"}, HTTPAddr: "off", Refresh: 200 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() { rdone <- r.Run(rctx) }()
	t.Cleanup(func() { rcancel(); <-rdone; r.Close() })

	dir := installWall(t, key, "web-dht")
	h := openWall(t, dir)
	h.runWall()
	waitReservation(t, h, r)
	coordinatortest.Eventually(t, 20*time.Second, "the peer online through a", func() bool { return s.heldBy(h.d) == "a" })
	coordinatortest.Eventually(t, 20*time.Second, "the relay's address kept", func() bool {
		st, err := peer.LoadState(dir)
		return err == nil && slices.ContainsFunc(st.RelayAddrs, func(a string) bool { return strings.HasSuffix(a, r.ID().String()) })
	})
	h.stop()

	s.start("b")
	coordinatortest.Eventually(t, 20*time.Second, "the relay learning b's address", func() bool {
		cfg, err := member.Files{Dir: relayDir, Key: relay.KeyFile, Config: relay.ConfigFile}.LoadConfig()
		return err == nil && slices.ContainsFunc(cfg.Coordinator, func(a string) bool { return strings.HasPrefix(a, s.listen["b"]) })
	})
	if err := s.coords["a"].Close(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	h = openWall(t, dir)
	for _, a := range peer.CoordinatorOf(h.d).Addrs {
		if a.String() == s.listen["b"] {
			t.Fatalf("the peer knew b's address (%v): nothing to find", peer.CoordinatorOf(h.d).Addrs)
		}
	}
	h.runWall()
	coordinatortest.Eventually(t, 30*time.Second, "the peer online through b", func() bool { return s.heldBy(h.d) == "b" })
	t.Logf("online through b %s after the peer started (load %s)", time.Since(start).Round(time.Millisecond), loadAverage())
}
