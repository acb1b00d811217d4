package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Vocabulary of the random stores and queries: few enough words that
// queries hit, overlapping substrings ("web" in "web-3" and "cobweb"),
// mixed case, a long text, and every status input.
var (
	ixNames    = []string{"web", "Web", "cobweb", "db", "mail", "kiosk", "pos", "Ärger", "build"}
	ixTags     = []string{"linux", "Linux-ARM", "windows", "", "mac os", "webtag"}
	ixGroups   = []string{"jumpgroup:ops", "jumpgroup:dev", "jumpgroup:devops", "jumpgroup:Secret", "user:alice", "user:bob", "user:mallory", ""}
	ixUsers    = []string{"root", "Alice", "bob", "svc-web", "admin"}
	ixComments = []string{"", "Rack 4, row B", "web server too", "owner IT; ROW c", strings.Repeat("long ", 40)}
	ixNATs     = []*pb.NatReport{nil, {Tcp: "endpoint-independent"}, {Tcp: "endpoint-independent", NoNat: true},
		{Tcp: "random", Udp: "blocked", Hairpinning: pb.Hairpinning_HAIRPINNING_NO}, {Tcp: "sequential", PortPreserving: true, Hairpinning: pb.Hairpinning_HAIRPINNING_YES}}
	// ixQueryWords are terms' values: some hit, some are shorter than a
	// trigram, some are status, method or NAT words or their parts.
	ixQueryWords = []string{"web", "we", "w", "cobweb", "db", "ärger", "linux", "arm", "win", "ops", "dev", "devops", "secret", "alice", "bob",
		"root", "svc", "row", "row c", "10.1.", "10.", "192.168.", "203.0", "line", "online", "lost", "passive", "active", "hard", "easy",
		"jumpoint", "12d3", "koow", "long long", "zzz", "e", "in"}
	ixQueryFields = []string{"", "", "", "name", "hostname", "tag", "comments", "group", "jumpgroup", "user", "private-ip", "public-ip", "ip", "id"}
)

// ixRecord is a random peer record numbered i.
func ixRecord(rng *rand.Rand, i int, now time.Time) *pb.Peer {
	pick := func(words []string) string { return words[rng.IntN(len(words))] }
	id := searchTestID(0)
	for j := 6; j < len(id); j++ {
		id[j] = byte(rng.UintN(256))
	}
	p := &pb.Peer{
		Id: id,
		Settings: &pb.InstallerDefaults{Tag: pick(ixTags), Comments: pick(ixComments), Group: pick(ixGroups),
			ConnectionType: pb.ConnectionType(rng.IntN(3))},
		Info: &pb.PeerInfo{Hostname: fmt.Sprintf("%s%d.example", pick(ixNames), rng.IntN(30)),
			PrivateIps: []string{fmt.Sprintf("10.%d.%d.%d", rng.IntN(3), rng.IntN(3), i%256)}},
		PublicAddr:   fmt.Sprintf("/ip4/203.0.113.%d/tcp/4001", rng.IntN(256)),
		LastSeenUnix: now.Add(-time.Duration(rng.IntN(60*24)) * time.Hour).Unix(),
	}
	if rng.IntN(4) > 0 {
		p.Settings.Name = fmt.Sprintf("%s-%d", pick(ixNames), rng.IntN(50))
	}
	if rng.IntN(3) == 0 {
		p.Info.PrivateIps = append(p.Info.PrivateIps, fmt.Sprintf("192.168.0.%d", rng.IntN(256)))
	}
	if rng.IntN(2) == 0 {
		p.Info.ConsoleUsers = []string{pick(ixUsers)}
	}
	if rng.IntN(2) == 0 {
		p.Stats = &pb.PeerStats{ConsoleUsers: []string{pick(ixUsers)}, Nat: ixNATs[rng.IntN(len(ixNATs))]}
	}
	if rng.IntN(5) > 0 {
		p.LastAccessUnix = now.Unix() - rng.Int64N(30*24*3600)
	}
	if rng.IntN(8) == 0 {
		p.Jumpoints = [][]byte{[]byte("jp")}
	}
	switch rng.IntN(12) {
	case 0:
		p.DeletedUnix = now.Unix()
	case 1:
		p.UninstalledUnix = now.Unix()
	case 2:
		p.Disabled = true
	case 3:
		p.PassiveUnix = now.Unix()
	}
	return p
}

// ixQuery is a random query of 0 to 3 terms.
func ixQuery(rng *rand.Rand) string {
	var terms []string
	for range rng.IntN(4) {
		var t string
		switch rng.IntN(10) {
		case 0:
			t = "status:" + searchStatuses[rng.IntN(len(searchStatuses))]
		case 1:
			t = "method:" + searchMethods[rng.IntN(len(searchMethods))]
		case 2:
			t = "nat:" + searchNATWords[rng.IntN(len(searchNATWords))]
		case 3:
			t = "last-access:" + []string{"<7d", ">3d", "never", "<12h"}[rng.IntN(4)]
		default:
			f := ixQueryFields[rng.IntN(len(ixQueryFields))]
			v := ixQueryWords[rng.IntN(len(ixQueryWords))]
			if f == "group" && rng.IntN(2) == 0 {
				v = ixGroups[rng.IntN(len(ixGroups)-1)]
			}
			if strings.Contains(v, " ") {
				v = `"` + v + `"`
			}
			if f != "" {
				t = f + ":" + v
			} else {
				t = v
			}
		}
		if rng.IntN(5) == 0 {
			t = "-" + t
		}
		terms = append(terms, t)
	}
	return strings.Join(terms, " ")
}

// ixRequest is a random request: an administrator or a caller who sees
// some groups, a settings' lost horizon, deleted or not, a limit.
func ixRequest(t *testing.T, rng *rand.Rand, now time.Time) (searchRequest, string) {
	qs := ixQuery(rng)
	q, err := ParseQuery(qs, now)
	if err != nil {
		t.Fatalf("ParseQuery(%q): %v", qs, err)
	}
	req := searchRequest{query: q, settings: &pb.Settings{LostAfterDays: uint32(1 + rng.IntN(40))}, now: now,
		includeDeleted: rng.IntN(3) == 0, limit: []int{0, 0, 1, 3, 20}[rng.IntN(5)]}
	if rng.IntN(3) > 0 {
		vis := visibility{}
		for _, g := range ixGroups {
			if rng.IntN(3) == 0 {
				vis[g] = true
			}
		}
		req.allow = vis.allows
	}
	return req, qs
}

// checkAgainstScan fails t unless the index answers req exactly as the
// scan does: the same total, the same peers in the same order, each with
// the same record and status. memo (or nil) keeps the scan's docs for the
// next checks while nothing is written (scanDocs).
// With encoded, it also compares the reply's bytes (findEncoded) with the
// scan's views marshalled, which costs more than the search under -race.
func checkAgainstScan(t *testing.T, r *registry, req searchRequest, memo scanDocs, encoded bool, what string) {
	t.Helper()
	got, gotTotal := r.find(req)
	want, wantTotal := r.scanFind(req, memo)
	if gotTotal != wantTotal || len(got) != len(want) {
		t.Fatalf("%s: index %d views of %d, scan %d of %d", what, len(got), gotTotal, len(want), wantTotal)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("%s: view %d: index %s %q, scan %s %q", what, i, peer.ID(got[i].GetPeer().GetId()), got[i].GetStatus(),
				peer.ID(want[i].GetPeer().GetId()), want[i].GetStatus())
		}
	}
	if !encoded {
		return
	}
	// The list as a reply carries it: the registry's encoded views.
	raw, n, total := r.findEncoded(req, 1<<30)
	wantRaw, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.PeerList{Peers: want})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) || total != wantTotal || !bytes.Equal(raw, wantRaw) {
		t.Fatalf("%s: the encoded list (%d views of %d, %d bytes) is not the scan's marshalled (%d of %d, %d bytes)",
			what, n, total, len(raw), len(want), wantTotal, len(wantRaw))
	}
}

// checkTags fails t unless the index's tag table counts exactly the tags
// its live slots hold.
func checkTags(t *testing.T, r *registry, what string) {
	t.Helper()
	r.mu.RLock()
	defer r.mu.RUnlock()
	x := r.index
	refs := make([]uint32, len(x.tags.vals))
	for i := range x.slots {
		s := &x.slots[i]
		if s.e == nil {
			continue
		}
		refs[s.tag]++
		if x.tags.vals[s.tag] != s.doc.span(searchTag, searchTag) {
			t.Fatalf("%s: slot %d's tag is %q, its doc's %q", what, i, x.tags.vals[s.tag], s.doc.span(searchTag, searchTag))
		}
	}
	live := 0
	for id, n := range refs {
		if n != x.tags.refs[id] {
			t.Fatalf("%s: tag %q held by %d slots, counted %d", what, x.tags.vals[id], n, x.tags.refs[id])
		}
		if n > 0 {
			live++
		}
	}
	if live != len(x.tags.ids) {
		t.Fatalf("%s: %d tags held, %d known", what, live, len(x.tags.ids))
	}
}

// TestSearchIndexAgreesWithScan: on a random store of 1,000 peers, changed
// by random writes (new peers, changed records, renames, deletions with and
// without tombstones, sessions, contacts, statistics) through peerStore on
// a real Badger, the index answers thousands of random queries exactly as
// the scan it replaced, for random callers and settings.
func TestSearchIndexAgreesWithScan(t *testing.T) {
	now := searchTestNow
	rng := rand.New(rand.NewPCG(16, 100))
	st, err := OpenStore(filepath.Join(t.TempDir(), "db"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n = 1000
	for from := 0; from < n; from += 500 {
		if err := st.Update(func(tx *Tx) error {
			for i := from; i < from+500; i++ {
				if err := tx.PutPeer(ixRecord(rng, i, now)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := newPeerStore(st, slog.New(slog.DiscardHandler)) // loads the index from the store
	if err != nil {
		t.Fatal(err)
	}
	ids := func() []peer.ID {
		ps.registry.mu.RLock()
		defer ps.registry.mu.RUnlock()
		out := make([]peer.ID, 0, len(ps.registry.peers))
		for id := range ps.registry.peers {
			out = append(out, id)
		}
		slices.Sort(out)
		return out
	}
	queries := func(round, k int) {
		memo := scanDocs{} // the registry does not change during a round's queries
		for j := range k {
			req, qs := ixRequest(t, rng, now)
			// The bytes of one list in four: every kind of write
			// comes before some of them (20 rounds of 40 writes).
			checkAgainstScan(t, ps.registry, req, memo, j%4 == 0, fmt.Sprintf("round %d query %d %q", round, j, qs))
		}
	}
	queries(0, 500)
	next := n
	for round := 1; round <= 20; round++ {
		all := ids()
		for range 40 {
			id := all[rng.IntN(len(all))]
			switch rng.IntN(9) {
			case 0: // a new peer
				if err := ps.put(ixRecord(rng, next, now)); err != nil {
					t.Fatal(err)
				}
				next++
			case 1: // a changed record
				fresh := ixRecord(rng, next, now)
				if _, err := ps.modify(id, func(rec *pb.Peer) error {
					fresh.Id = rec.GetId()
					proto.Reset(rec)
					proto.Merge(rec, fresh)
					return nil
				}); err != nil && catalog.CodeOf(err) != catalog.CodePeerNotFound {
					t.Fatal(err)
				}
			case 2: // a rename
				if _, err := ps.modify(id, func(rec *pb.Peer) error {
					rec.Settings.Name = fmt.Sprintf("%s-%d", ixNames[rng.IntN(len(ixNames))], rng.IntN(50))
					return nil
				}); err != nil && catalog.CodeOf(err) != catalog.CodePeerNotFound {
					t.Fatal(err)
				}
			case 3: // deleted, with or without a tombstone
				var tomb *pb.Peer
				if rng.IntN(2) == 0 {
					tomb = &pb.Peer{Id: []byte(id), DeletedUnix: now.Unix()}
				}
				if err := ps.remove(id, tomb); err != nil {
					t.Fatal(err)
				}
			case 4:
				ps.attach(id, &peerSession{id: id})
			case 5:
				if s := ps.session(id); s != nil {
					ps.detach(id, s, now.Add(-time.Duration(rng.IntN(40*24))*time.Hour))
				}
			case 6: // statistics: NAT and console users change
				ps.touch(id, now.Add(-time.Duration(rng.IntN(40*24))*time.Hour),
					&pb.PeerStats{ConsoleUsers: []string{ixUsers[rng.IntN(len(ixUsers))]}, Nat: ixNATs[rng.IntN(len(ixNATs))]})
			case 7: // a contact only
				ps.touch(id, now.Add(-time.Duration(rng.IntN(40*24))*time.Hour), nil)
			case 8: // a change that fails is never seen
				before, _ := ps.get(id)
				boom := errors.New("refused")
				if _, err := ps.modify(id, func(rec *pb.Peer) error {
					rec.Settings.Name = "never-committed"
					rec.Settings.Group = "jumpgroup:ops"
					return boom
				}); err != nil && !errors.Is(err, boom) && catalog.CodeOf(err) != catalog.CodePeerNotFound {
					t.Fatal(err)
				}
				if after, _ := ps.get(id); !proto.Equal(before, after) {
					t.Fatalf("a failed change reached the registry: %v", after)
				}
				q, _ := ParseQuery("never-committed", now)
				if _, total := ps.find(searchRequest{query: q, includeDeleted: true, now: now}); total != 0 {
					t.Fatalf("a failed change reached the index: %d matches", total)
				}
			}
		}
		queries(round, 30)
		checkTags(t, ps.registry, fmt.Sprintf("round %d", round))
	}
}

// TestSearchIndexStatusMoves: the status is computed at each search from
// the slot, so a peer becomes lost when time passes its horizon or the
// horizon is shortened, without any write.
func TestSearchIndexStatusMoves(t *testing.T) {
	r := newRegistry()
	p := searchTestPeers()[0]
	p.LastSeenUnix = searchTestNow.Add(-10 * 24 * time.Hour).Unix()
	r.put(p)
	lost, _ := ParseQuery("status:lost", searchTestNow)
	count := func(days uint32, now time.Time) int {
		_, n := r.find(searchRequest{query: lost, settings: &pb.Settings{LostAfterDays: days}, now: now})
		return n
	}
	if count(30, searchTestNow) != 0 || count(10, searchTestNow) != 1 || count(30, searchTestNow.Add(20*24*time.Hour)) != 1 {
		t.Fatal("status:lost does not follow the clock and the horizon")
	}
	r.attach(peer.ID(p.GetId()), &peerSession{})
	if count(10, searchTestNow) != 0 {
		t.Fatal("an online peer is lost")
	}
}

// TestSearchIndexStrangerSeesNothing is the attack: a technician who may
// see jumpgroup:ops searches for peers of jumpgroup:secret and of other
// technicians' personal lists by every term that matches them (name, ID,
// tag, group, free text, negations, status) and gets none of them, and no
// count of them either; a peer moved into ops shows at once, one moved
// out disappears at once.
func TestSearchIndexStrangerSeesNothing(t *testing.T) {
	st, err := OpenStore(filepath.Join(t.TempDir(), "db"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Update(func(tx *Tx) error {
		if err := tx.PutUser(&pb.User{Name: "tina", Role: pb.Role_ROLE_TECHNICIAN}); err != nil {
			return err
		}
		return tx.PutGroup(&pb.Group{Code: "ops", Members: []*pb.GroupMember{{User: "tina", Role: pb.MemberRole_MEMBER_ROLE_MEMBER}}})
	}); err != nil {
		t.Fatal(err)
	}
	svc := serviceOver(t, st, searchTestNow)
	mk := func(b byte, name, group string) *pb.Peer {
		return &pb.Peer{Id: searchTestID(b), Settings: &pb.InstallerDefaults{Name: name, Group: group, Tag: "crown-jewels"},
			Info: &pb.PeerInfo{Hostname: name + ".example"}, LastSeenUnix: searchTestNow.Unix()}
	}
	secret := []*pb.Peer{mk(1, "vault-01", "jumpgroup:secret"), mk(2, "vault-02", "jumpgroup:Ops"), mk(3, "vault-03", "user:bob"),
		mk(4, "vault-04", ""), mk(5, "vault-05", "jumpgroup:ops ")}
	mine := mk(9, "web-01", "jumpgroup:ops")
	for _, p := range append(secret, mine) {
		if err := svc.peers.put(p); err != nil {
			t.Fatal(err)
		}
	}
	tina := &caller{user: &pb.User{Name: "tina", Role: pb.Role_ROLE_TECHNICIAN}}
	queries := []string{"", "vault", "vault-01", "name:vault", "hostname:vault-01.example", "tag:crown", "crown-jewels",
		"group:secret", "jumpgroup:secret", "group:jumpgroup:secret", "group:bob", "group:user:bob", "user:bob", "group:ops",
		"jumpgroup:ops", "-name:web", "-tag:nothing", "status:offline", "-status:online", "method:active", "nat:unknown",
		"last-access:never", "id:" + strings.ToLower(peer.ID(secret[0].GetId()).String()[10:20]), peer.ID(secret[0].GetId()).String(),
		strings.ToLower(peer.ID(secret[0].GetId()).String()[5:12])}
	for _, qs := range queries {
		for _, deleted := range []bool{false, true} {
			views, total, err := svc.searchPeers(tina, qs, deleted, 0, false)
			if err != nil {
				t.Fatalf("%q: %v", qs, err)
			}
			for _, v := range views {
				if g := v.GetPeer().GetSettings().GetGroup(); g != "jumpgroup:ops" {
					t.Errorf("%q: tina sees %s of %q", qs, v.GetPeer().GetSettings().GetName(), g)
				}
			}
			if total > 1 || total != len(views) {
				t.Errorf("%q: total %d with %d views: the count tells of peers tina may not see", qs, total, len(views))
			}
		}
	}
	// In step with the store: moved into ops, the peer shows; moved out, not.
	id := peer.ID(secret[0].GetId())
	move := func(group string) {
		if _, err := svc.peers.modify(id, func(rec *pb.Peer) error { rec.Settings.Group = group; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	count := func(qs string) int {
		_, total, err := svc.searchPeers(tina, qs, false, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		return total
	}
	move("jumpgroup:ops")
	if count("vault") != 1 {
		t.Fatal("a peer moved into tina's group does not show")
	}
	move("jumpgroup:secret")
	if count("vault") != 0 || count("") != 1 {
		t.Fatal("a peer moved out of tina's group still shows")
	}
}

// TestSearchIndexConcurrent: writes (records, sessions, statistics,
// deletions) and searches at once; every answer is sorted, counts what it
// shows, and shows only what the caller may see; at the end the index
// agrees with the scan. Run it with -race.
func TestSearchIndexConcurrent(t *testing.T) {
	now := searchTestNow
	r := newRegistry()
	seed := rand.New(rand.NewPCG(7, 7))
	recs := make([]*pb.Peer, 200)
	for i := range recs {
		recs[i] = ixRecord(seed, i, now)
		r.put(recs[i])
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; i < 500; i++ {
				p := recs[rng.IntN(len(recs))]
				id := peer.ID(p.GetId())
				switch rng.IntN(5) {
				case 0:
					fresh := ixRecord(rng, i, now)
					fresh.Id = p.GetId()
					r.put(fresh)
				case 1:
					r.remove(id)
				case 2:
					r.put(p)
				case 3:
					r.attach(id, &peerSession{id: id})
				case 4:
					r.touch(id, now, &pb.PeerStats{ConsoleUsers: []string{ixUsers[rng.IntN(len(ixUsers))]}, Nat: ixNATs[rng.IntN(len(ixNATs))]})
				}
			}
		}()
	}
	var searches sync.WaitGroup
	for s := range 2 {
		searches.Add(1)
		go func() {
			defer searches.Done()
			rng := rand.New(rand.NewPCG(uint64(s), 2))
			for {
				select {
				case <-stop:
					return
				default:
				}
				vis := visibility{"jumpgroup:ops": true, "user:alice": true}
				q, _ := ParseQuery(ixQuery(rng), now)
				views, total := r.find(searchRequest{query: q, allow: vis.allows, settings: &pb.Settings{LostAfterDays: 30}, now: now, limit: 50})
				if total < len(views) {
					t.Errorf("total %d below %d views", total, len(views))
				}
				for i, v := range views {
					if !vis[v.GetPeer().GetSettings().GetGroup()] {
						t.Errorf("a view of group %q", v.GetPeer().GetSettings().GetGroup())
					}
					if i > 0 && strings.ToLower(views[i-1].GetPeer().GetSettings().GetName()) > strings.ToLower(v.GetPeer().GetSettings().GetName()) &&
						views[i-1].GetPeer().GetSettings().GetName() != "" && v.GetPeer().GetSettings().GetName() != "" {
						t.Errorf("not sorted at %d", i)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	searches.Wait()
	for range 50 {
		req, qs := ixRequest(t, seed, now)
		checkAgainstScan(t, r, req, nil, true, qs)
	}
}
