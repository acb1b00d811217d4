package console_test

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// storePeers stops the site's coordinator, writes n peer records to its
// store, every other one in alice's own jump group and the others in
// bob's, and starts it again.
func storePeers(t *testing.T, s *coordinatortest.Site[*console.Client], n int) {
	t.Helper()
	if s.Store.URL != "" {
		t.Skip("writes the records to the Badger store directly")
	}
	s.Stop()
	site, err := coordinator.OpenSite(s.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := coordinator.OpenStore(site.StorePath(), coordinator.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := s.Clock.Now()
	err = st.Update(func(tx *coordinator.Tx) error {
		for i := range n {
			_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
			if err != nil {
				return err
			}
			id, _ := peer.IDFromPublicKey(pub)
			owner := []string{"alice", "bob"}[i%2]
			if err := tx.PutPeer(&pb.Peer{Id: []byte(id), Settings: &pb.InstallerDefaults{Name: fmt.Sprintf("%s-host-%02d", owner, i),
				Group: "user:" + owner, Tag: "linux", ConnectionType: pb.ConnectionType_CONNECTION_TYPE_ACTIVE},
				Info:         &pb.PeerInfo{Hostname: fmt.Sprintf("h%d", i), PrivateIps: []string{fmt.Sprintf("10.0.0.%d", i)}},
				LastSeenUnix: now.Add(-time.Hour).Unix(), InstalledUnix: now.Add(-48 * time.Hour).Unix()}); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
}

func names(views []*pb.PeerView) []string {
	var out []string
	for _, v := range views {
		out = append(out, v.GetPeer().GetSettings().GetName())
	}
	return out
}

// TestDirectListsWhatTheConsoleLists: `jumpmesh ls`'s connection without
// a host lists, for a technician, exactly what the console lists — their
// own peers, none of another user's, whatever the query names — and for
// the administrator every peer, in both views; a technician removed since
// gets no list.
func TestDirectListsWhatTheConsoleLists(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	alice := s.User("alice", pb.Role_ROLE_TECHNICIAN)
	bob := s.User("bob", pb.Role_ROLE_TECHNICIAN)
	bob.Close()
	storePeers(t, s, 40)
	ctx := s.Ctx()
	open := func(home string) *console.Direct {
		t.Helper()
		d, err := console.OpenDirect(ctx, s.Home(home))
		if err != nil {
			t.Fatalf("direct connection of %s: %v", home, err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	direct := open("alice")
	for _, q := range []string{"", "host", "bob", "name:bob-host-01", "group:user:bob", "-group:user:alice", "tag:linux"} {
		for _, view := range []pb.PeerListView{pb.PeerListView_PEER_LIST_VIEW_TABLE, pb.PeerListView_PEER_LIST_VIEW_FULL} {
			got, total, err := direct.PeerPageView(ctx, q, true, 0, view)
			if err != nil {
				t.Fatalf("%q: %v", q, err)
			}
			want, wantTotal, err := alice.PeerPageView(ctx, q, true, 0, view)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names(got), names(want)) || total != wantTotal {
				t.Fatalf("%q: direct %v (%d), console %v (%d)", q, names(got), total, names(want), wantTotal)
			}
			for _, n := range names(got) {
				if len(n) < 5 || n[:5] != "alice" {
					t.Fatalf("%q: alice sees %s", q, n)
				}
			}
		}
	}
	if got, _, _ := direct.PeerPageView(ctx, "", true, 0, pb.PeerListView_PEER_LIST_VIEW_TABLE); len(got) != 20 {
		t.Fatalf("alice sees %d peers, want her 20", len(got))
	}
	admin := open("admin")
	if got, total, err := admin.PeerPageView(ctx, "host", true, 0, pb.PeerListView_PEER_LIST_VIEW_FULL); err != nil || len(got) != 40 || total != 40 {
		t.Fatalf("admin: %d of %d, %v", len(got), total, err)
	}
	if _, err := admin.Jumpoints(ctx); err != nil {
		t.Fatalf("jumpoints: %v", err)
	}

	// bob, removed, is refused as his console is (or cannot connect: ls
	// then goes the console's way).
	bobDirect := open("bob")
	if err := s.Admin.RemoveUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	got, _, err := bobDirect.PeerPageView(ctx, "", true, 0, pb.PeerListView_PEER_LIST_VIEW_TABLE)
	if err == nil || len(got) > 0 {
		t.Fatalf("removed bob listed %v, %v", names(got), err)
	}
	if d, err := console.OpenDirect(ctx, s.Home("bob")); err == nil {
		got, _, err = d.PeerPageView(ctx, "", true, 0, pb.PeerListView_PEER_LIST_VIEW_TABLE)
		d.Close()
		if err == nil || len(got) > 0 {
			t.Fatalf("removed bob listed %v, %v on a new connection", names(got), err)
		}
		t.Logf("removed technician, new connection: %s: %v", catalog.CodeOf(err), err)
	}
}

// TestDirectKeepsWhatTheAnswerTells: a console home that lists through
// the connection without a host keeps every coordinator address and the
// members' lane the answer tells, as a console's other commands do: a
// technician who only runs `ls` still knows every coordinator when the
// one it logged in with dies. The home here has forgotten all but its
// login address; one list puts the rest back.
func TestDirectKeepsWhatTheAnswerTells(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	s.User("alice", pb.Role_ROLE_TECHNICIAN).Close()
	path := filepath.Join(s.Home("alice"), console.ConfigFile)
	read := func() member.Config {
		t.Helper()
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var cfg member.Config
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	full := read()
	if len(full.Coordinator) < 2 || len(full.Lane) == 0 {
		t.Fatalf("the login kept %d coordinator addresses and lane %v: the test needs two and a lane", len(full.Coordinator), full.Lane)
	}
	stripped := full
	stripped.Coordinator, stripped.Lane = full.Coordinator[:1], nil
	raw, err := json.Marshal(stripped)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	d, err := console.OpenDirect(s.Ctx(), s.Home("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, _, err := d.PeerPageView(s.Ctx(), "", false, 0, pb.PeerListView_PEER_LIST_VIEW_TABLE); err != nil {
		t.Fatal(err)
	}
	got := read()
	if !slices.Equal(got.Coordinator, full.Coordinator) || !slices.Equal(got.Lane, full.Lane) {
		t.Fatalf("after a list the home keeps coordinators %v and lane %v, want %v and %v", got.Coordinator, got.Lane, full.Coordinator, full.Lane)
	}
}
