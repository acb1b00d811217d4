package coordinator

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestEncodedViewFollowsEveryWrite encodes a peer's view before every kind
// of change the registry takes (so that stale bytes would stay) and checks
// after it that the bytes a list sends are a fresh marshal of the view.
func TestEncodedViewFollowsEveryWrite(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	ps := &peerStore{registry: newRegistry(), log: slog.New(slog.DiscardHandler)}
	r := ps.registry
	rec := fakePeer(t, 1, "jumpgroup:ops", now)
	id := peer.ID(rec.GetId())
	r.mu.Lock()
	r.fill([]*pb.Peer{rec})
	r.mu.Unlock()
	check := func(step string) {
		t.Helper()
		r.mu.RLock()
		defer r.mu.RUnlock()
		e := r.peers[id]
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(e.sharedView())
		if err != nil {
			t.Fatal(err)
		}
		got := e.encoded()
		if !bytes.Equal(got, want) {
			t.Fatalf("after %s: the encoded view is not a fresh marshal of it", step)
		}
		wantTable, err := proto.MarshalOptions{Deterministic: true}.Marshal(e.tableView())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e.encodedTable(), wantTable) {
			t.Fatalf("after %s: the encoded table view is not a fresh marshal of it", step)
		}
		var dec pb.Peer
		if err := proto.Unmarshal(got, &dec); err != nil || !proto.Equal(&dec, e.view()) {
			t.Fatalf("after %s: the encoded view decodes to %v (%v), want %v", step, &dec, err, e.view())
		}
	}
	check("the load")
	changed := proto.CloneOf(rec)
	changed.Settings.Name, changed.Settings.Comments = "renamed", "moved to rack 4"
	r.put(changed)
	check("a record put")
	r.touch(id, now.Add(time.Minute), nil)
	check("a contact")
	r.touch(id, now.Add(2*time.Minute), &pb.PeerStats{Load1: 0.5, ConsoleUsers: []string{"alice"}})
	check("statistics with new console users (the doc rebuilt)")
	r.touch(id, now.Add(3*time.Minute), &pb.PeerStats{Load1: 0.7, ConsoleUsers: []string{"alice"}})
	check("statistics the doc does not hold")
	s := &peerSession{}
	r.attach(id, s)
	check("a session")
	r.detach(id, s, now.Add(4*time.Minute))
	check("the session's end")
	other := proto.CloneOf(changed)
	other.Disabled, other.Jumpoints, other.PublicAddr = true, [][]byte{[]byte("jp")}, "/ip4/192.0.2.9/tcp/1"
	r.putAt(other, 7)
	check("a put at a revision")
	watched := proto.CloneOf(other)
	watched.Settings.Tag, watched.LastSeenUnix = "watched", now.Add(time.Hour).Unix()
	raw, err := proto.Marshal(watched)
	if err != nil {
		t.Fatal(err)
	}
	ps.applyPeers(watchBatch{events: []storeEvent{{key: peersPrefix + string(id), value: raw, rev: 9}}, rev: 9})
	check("another coordinator's write (the p/ watch)")
	if e := r.peers[id]; e.rec.GetSettings().GetTag() != "watched" {
		t.Fatalf("the watch's record was not taken: %v", e.rec)
	}
}

// TestEncodedListIsTheMarshalledList checks that a list built from the
// encoded views is, byte for byte, the list of view messages marshalled,
// for an administrator and for a technician (who gets only the peers of
// her groups), and that it stops at the byte budget.
func TestEncodedListIsTheMarshalledList(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	r := newRegistry()
	groups := []string{"jumpgroup:ops", "jumpgroup:dev", "user:tina", "user:bob"}
	var recs []*pb.Peer
	for i := range 300 {
		recs = append(recs, fakePeer(t, i, groups[i%len(groups)], now))
	}
	r.mu.Lock()
	r.fill(recs)
	r.mu.Unlock()
	r.touch(peer.ID(recs[5].GetId()), now, &pb.PeerStats{ConsoleUsers: []string{"bob"}})
	r.attach(peer.ID(recs[6].GetId()), &peerSession{})
	tina := func(g string) bool { return g == "jumpgroup:ops" || g == "user:tina" }
	for _, c := range []struct {
		name  string
		allow func(string) bool
		query string
		want  int
	}{{"admin", nil, "", 300}, {"tina", tina, "", 150}, {"admin", nil, "status:online", 1}, {"tina", tina, "group:bob", 0}} {
		q, err := ParseQuery(c.query, now)
		if err != nil {
			t.Fatal(err)
		}
		req := searchRequest{query: q, allow: c.allow, settings: &pb.Settings{LostAfterDays: 30}, now: now, limit: 200, shared: true}
		views, total := r.find(req)
		raw, n, etotal := r.findEncoded(req, 1<<20)
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.PeerList{Peers: views})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, want) || n != len(views) || etotal != total || total != c.want {
			t.Fatalf("%s %q: encoded %d views of %d (%d bytes), marshalled %d of %d (%d bytes), want %d in all",
				c.name, c.query, n, etotal, len(raw), len(views), total, len(want), c.want)
		}
		got, err := PeerListViews(encodedPeerList(raw, total))
		if err != nil || len(got) != len(views) {
			t.Fatalf("%s: PeerListViews: %d views, %v", c.name, len(got), err)
		}
		for _, v := range got {
			if c.allow != nil && !c.allow(v.GetPeer().GetSettings().GetGroup()) {
				t.Fatalf("%s sees a peer of %s", c.name, v.GetPeer().GetSettings().GetGroup())
			}
		}
		// A budget cuts the list between two views.
		if len(raw) > 0 {
			cut, m, _ := r.findEncoded(req, len(raw)-1)
			if m != n-1 || !bytes.Equal(cut, raw[:len(cut)]) {
				t.Fatalf("%s: a budget one byte short kept %d of %d views", c.name, m, n)
			}
		}
	}
}

// TestPeerListTableView: a table's list (PEER_LIST_VIEW_TABLE) carries
// the table's fields of the peers the caller may see and nothing else of
// their records; a view the coordinator does not know is refused with a
// catalog error, as is one from a console that sends garbage there.
func TestPeerListTableView(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	st, err := OpenStore(filepath.Join(t.TempDir(), "db"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Update(func(tx *Tx) error {
		if err := tx.PutUser(&pb.User{Name: "ann", Role: pb.Role_ROLE_TECHNICIAN}); err != nil {
			return err
		}
		if err := tx.PutGroup(&pb.Group{Code: "ops", Members: []*pb.GroupMember{{User: "ann", Role: pb.MemberRole_MEMBER_ROLE_MEMBER}}}); err != nil {
			return err
		}
		for i := range 40 {
			rec := fakePeer(t, i, []string{"user:ann", "user:bob", "jumpgroup:ops"}[i%3], now)
			rec.InstallerId, rec.Settings.Comments, rec.Settings.JumpPolicy = "inst-1", "secret comment", "night-only"
			rec.Info.PrivateIps = append(rec.Info.PrivateIps, "192.168.77.1")
			rec.Info.Nics = []*pb.Nic{{Name: "eth0", Mac: "02:00:00:00:00:01"}}
			rec.Stats = &pb.PeerStats{Load1: 3, ConsoleUsers: []string{"carol"}, DiskTotalBytes: 1 << 40}
			rec.Jumpoints = [][]byte{[]byte("jp-1")}
			if err := tx.PutPeer(rec); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	svc := serviceOver(t, st, now)
	ann := &caller{user: &pb.User{Name: "ann", Role: pb.Role_ROLE_TECHNICIAN}}
	list := func(c *caller, view pb.PeerListView) []*pb.PeerView {
		t.Helper()
		r, err := svc.peerList(c, &pb.PeerListRequest{View: view})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var got pb.Response
		if err := proto.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		return got.GetPeers().GetPeers()
	}
	full, table := list(ann, pb.PeerListView_PEER_LIST_VIEW_FULL), list(ann, pb.PeerListView_PEER_LIST_VIEW_TABLE)
	if len(full) != 27 || len(table) != len(full) { // her list (14) and ops (13)
		t.Fatalf("ann sees %d peers in full and %d in a table, want 27", len(full), len(table))
	}
	for i, v := range table {
		f, p := full[i].GetPeer(), v.GetPeer()
		if g := p.GetSettings().GetGroup(); g != "user:ann" && g != "jumpgroup:ops" {
			t.Fatalf("ann's table holds a peer of %s", g)
		}
		want := &pb.Peer{Id: f.GetId(), PublicAddr: f.GetPublicAddr(), LastSeenUnix: f.GetLastSeenUnix(), Jumpoints: f.GetJumpoints(),
			Settings: &pb.InstallerDefaults{Name: f.GetSettings().GetName(), Group: f.GetSettings().GetGroup(), Tag: f.GetSettings().GetTag()},
			Info:     &pb.PeerInfo{PrivateIps: f.GetInfo().GetPrivateIps()[:1], ConsoleUsers: f.GetInfo().GetConsoleUsers()},
			Stats:    &pb.PeerStats{ConsoleUsers: f.GetStats().GetConsoleUsers()}}
		if !proto.Equal(p, want) || v.GetStatus() != full[i].GetStatus() {
			t.Fatalf("table view %d: %v (%s), want %v (%s)", i, p, v.GetStatus(), want, full[i].GetStatus())
		}
	}
	// What `ls` and `ls --json` print of ann's lists (the console's
	// writers): every peer of hers and of ops, none of bob's; the table
	// nothing its view leaves out.
	var printed bytes.Buffer
	if err := console.WritePeerTable(&printed, table, nil); err != nil {
		t.Fatal(err)
	}
	tableText := printed.String()
	printed.Reset()
	if err := console.WritePeerListJSON(&printed, full, nil); err != nil {
		t.Fatal(err)
	}
	jsonText := printed.String()
	for i := range 40 {
		name := fmt.Sprintf("host-%05d", i)
		seen := i%3 != 1
		if strings.Contains(tableText, name) != seen || strings.Contains(jsonText, `"name": "`+name+`"`) != seen {
			t.Fatalf("%s (%s): in ann's table %v, in her JSON %v; want %v", name, []string{"user:ann", "user:bob", "jumpgroup:ops"}[i%3],
				strings.Contains(tableText, name), strings.Contains(jsonText, name), seen)
		}
	}
	for _, hidden := range []string{"secret comment", "night-only", "inst-1", "192.168.77.1", "eth0", "user:bob"} {
		if strings.Contains(tableText, hidden) {
			t.Fatalf("ann's table prints %q:\n%s", hidden, tableText)
		}
	}
	if !strings.Contains(jsonText, `"comments": "secret comment"`) || strings.Contains(jsonText, "user:bob") {
		t.Fatalf("ann's JSON: her peers' comments missing, or bob's group shown:\n%.2000s", jsonText)
	}
	for _, view := range []pb.PeerListView{2, 99, -1, 1 << 30} {
		if _, err := svc.peerList(ann, &pb.PeerListRequest{View: view}); catalog.CodeOf(err) != catalog.CodeInvalidArgument {
			t.Fatalf("view %d: %v, want %s", view, err, catalog.CodeInvalidArgument)
		}
	}
	// A stranger to every group sees nothing, whatever the view.
	eve := &caller{user: &pb.User{Name: "eve", Role: pb.Role_ROLE_TECHNICIAN}}
	if got := list(eve, pb.PeerListView_PEER_LIST_VIEW_TABLE); len(got) != 0 {
		t.Fatalf("eve sees %d peers in a table", len(got))
	}
}
