package coordinator

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func relayCaller(t *testing.T) *caller {
	return &caller{peer: newPeerID(t), user: &pb.User{Name: "relay-" + t.Name(), Role: pb.Role_ROLE_RELAY}}
}

// fetchACL is a relay's ACL fetch from svc, listening at addrs.
func fetchACL(t *testing.T, svc *Service, c *caller, addrs ...ma.Multiaddr) {
	t.Helper()
	if _, err := svc.relayACL(c, &pb.RelayACLRequest{Addrs: encodeAddrs(addrs)}); err != nil {
		t.Fatal(err)
	}
}

// relaysOf is the relays svc hands out, by peer ID, with their addresses.
func relaysOf(svc *Service) map[peer.ID][]string {
	out := map[peer.ID][]string{}
	infos, _ := peer.AddrInfosFromP2pAddrs(svc.relayAddrs()...)
	for _, in := range infos {
		for _, a := range in.Addrs {
			out[in.ID] = append(out[in.ID], a.String())
		}
		slices.Sort(out[in.ID])
	}
	return out
}

// Relays known site-wide: three coordinators of a site on one etcd; a
// relay that fetches its ACL from a only is handed out by b and c too,
// and the peers they hold are sent an update that names it. It moves to
// b: nothing lost. a stops (its lease revoked): the relay is still handed
// out (its record is not a's). Not heard from for three periods on
// anyone's clock: no longer handed out.
func TestRelaysKnownSiteWide(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	rec := fakePeer(t, 1, "user:ann", now)
	svcs, stores := siteMembers(t, now, func(st *Store) {
		mustUpdate(t, st, func(tx *Tx) error { return tx.PutPeer(rec) })
	}, "a", "b", "c")
	a, b, c := svcs[0], svcs[1], svcs[2]
	p := peer.ID(rec.GetId())
	sess := newPeerSession(p, nil)
	b.peers.attach(p, sess)
	t.Cleanup(func() { b.peers.detach(p, sess, now) })

	relay := relayCaller(t)
	addr := ma.StringCast("/ip4/192.0.2.7/tcp/4832")
	fetchACL(t, a, relay, addr)
	want := fmt.Sprint([]string{addr.String()})
	d := waitFor(t, "b and c hand out the relay heard by a", func() bool {
		return fmt.Sprint(relaysOf(b)[relay.peer]) == want && fmt.Sprint(relaysOf(c)[relay.peer]) == want
	})
	t.Logf("a relay heard by a: handed out by b and c %s after a's fetch", d.Round(100*time.Microsecond))
	if q := queued(sess); len(q) != 1 || q[0] != nil {
		t.Fatalf("b's peer was queued %v, want one settings update (it names the relay)", q)
	}
	if got := b.settingsUpdate(p).GetUpdate().GetRelays(); len(got) != 1 {
		t.Fatalf("b's update names %d relays, want 1", len(got))
	}

	// The relay moves to b, at a new address: a and c follow.
	moved := ma.StringCast("/ip4/192.0.2.8/tcp/4832")
	fetchACL(t, b, relay, moved)
	want = fmt.Sprint([]string{moved.String()})
	waitFor(t, "a and c follow the relay to its new address", func() bool {
		return fmt.Sprint(relaysOf(a)[relay.peer]) == want && fmt.Sprint(relaysOf(c)[relay.peer]) == want
	})

	// a stops: its lease goes, the relay's record stays.
	if err := stores[0].Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a gone from c's members", func() bool { return len(c.members()) == 2 })
	if fmt.Sprint(relaysOf(c)[relay.peer]) != want {
		t.Fatalf("c lost the relay with a's lease: %v", relaysOf(c))
	}

	// Three periods without a fetch, on c's clock: no longer handed out.
	c.clock.(*mesh.ManualClock).Advance(3*RelayRefresh + time.Second)
	if got := relaysOf(c); len(got) != 0 {
		t.Fatalf("c hands out a relay not heard from for three periods: %v", got)
	}
	// A coordinator started a day later deletes the lapsed record.
	b.clock.(*mesh.ManualClock).Advance(3*RelayRefresh + relaySweep + time.Minute)
	b.sweepRelays(mustReadRelays(t, b))
	if n := len(mustReadRelays(t, c)); n != 0 {
		t.Fatalf("%d lapsed records kept", n)
	}
	if got := len(recordsUnder(t, stores[2], relaysPrefix)); got != 0 {
		t.Fatalf("%d relay records left a day after they lapsed, want 0", got)
	}
}

func mustReadRelays(t *testing.T, svc *Service) (stale [][]byte) {
	t.Helper()
	mustView(t, svc.store, func(tx *Tx) (err error) { stale, err = svc.readRelays(tx); return err })
	return stale
}

func recordsUnder(t *testing.T, st *Store, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	mustView(t, st, func(tx *Tx) error {
		return tx.kv.scan([]byte(prefix), nil, false, func(k, v []byte) (bool, error) {
			out[string(k)] = string(v)
			return true, nil
		})
	})
	return out
}

// The attack side of relay records. A compromised relay names only its
// own record (the key is its authenticated ID, its request has no field
// for another), at most maxRelayAddrs addresses reach other coordinators
// (and the peers and consoles they tell), and fetching in a loop writes
// its record at most once per relayRewrite. Records under rl/ that do
// not decode, or sit under a key that is no peer ID, change nothing; the
// next real one still applies.
func TestRelayRecordsAttack(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	svcs, stores := siteMembers(t, now, nil, "a", "b")
	a, b := svcs[0], svcs[1]

	// b counts the writes of each relay's record.
	var mu sync.Mutex
	writes := map[string]int{}
	b.store.watch(relaysPrefix, 0, func(wb watchBatch) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range wb.events {
			writes[strings.TrimPrefix(e.key, relaysPrefix)]++
		}
	})
	writesOf := func(id peer.ID) int { mu.Lock(); defer mu.Unlock(); return writes[id.String()] }

	honest, evil := relayCaller(t), relayCaller(t)
	fetchACL(t, a, honest, ma.StringCast("/ip4/192.0.2.7/tcp/4832"))
	var many []ma.Multiaddr
	for i := range 200 {
		many = append(many, ma.StringCast(fmt.Sprintf("/ip4/198.51.100.%d/tcp/%d", i%250, 1000+i)))
	}
	for range 50 {
		fetchACL(t, a, evil, many...)
	}
	// A marker after the loop: once b saw it, it saw every write before.
	marker := relayCaller(t)
	fetchACL(t, a, marker, ma.StringCast("/ip4/192.0.2.9/tcp/4832"))
	waitFor(t, "the marker relay on b", func() bool { return writesOf(marker.peer) == 1 && len(relaysOf(b)[marker.peer]) == 1 })
	if n := writesOf(evil.peer); n != 1 {
		t.Fatalf("50 fetches within %s wrote the relay's record %d times, want 1", relayRewrite, n)
	}
	got := relaysOf(b)
	if len(got[evil.peer]) != maxRelayAddrs {
		t.Fatalf("b hands out %d addresses of one relay, want at most %d", len(got[evil.peer]), maxRelayAddrs)
	}
	if fmt.Sprint(got[honest.peer]) != "[/ip4/192.0.2.7/tcp/4832]" {
		t.Fatalf("the honest relay's addresses on b: %v", got[honest.peer])
	}

	// Garbage under rl/ (written straight into etcd): ignored.
	mustUpdate(t, stores[0], func(tx *Tx) error {
		if err := tx.kv.set([]byte(relaysPrefix+"not-a-peer-id"), []byte(`{"addrs":["/ip4/203.0.113.1/tcp/1"],"at":1}`)); err != nil {
			return err
		}
		return tx.kv.set([]byte(relaysPrefix+honest.peer.String()), []byte("not json"))
	})
	fetchACL(t, a, marker, ma.StringCast("/ip4/192.0.2.10/tcp/4832"))
	waitFor(t, "the marker's new address on b", func() bool {
		return fmt.Sprint(relaysOf(b)[marker.peer]) == "[/ip4/192.0.2.10/tcp/4832]"
	})
	got = relaysOf(b)
	if len(got) != 3 || fmt.Sprint(got[honest.peer]) != "[/ip4/192.0.2.7/tcp/4832]" {
		t.Fatalf("relays on b after garbage records: %v", got)
	}
}
