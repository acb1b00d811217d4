package coordinator

import (
	"crypto/rand"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// A tunnel report larger than one transaction takes (etcd opened with
// --max-txn-ops 24: chunks of 8) fails in its second chunk; the jumpoint
// sends it again, and every tunnel is audited exactly once. Resending it
// once more, and to another coordinator of the site (a second store
// handle), writes nothing. On Badger the report is one transaction.
func TestTunnelReportResentAfterPartialWrite(t *testing.T) {
	const n = 20
	eachStoreBackend(t, func(t *testing.T, b storeBackend) {
		st := b.open(t)
		defer st.Close()
		if e, ok := st.kv.(*etcdKV); ok {
			e.cfg.MaxTxnOps = 24
		}
		now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
		svc := serviceOver(t, st, now)
		key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
		tech, _ := peer.IDFromPrivateKey(key)
		mustUpdate(t, st, func(tx *Tx) error { return tx.BindKey(tech, "tom") })
		jp := &caller{peer: "plant-a-key", user: &pb.User{Name: "plant-a", Role: pb.Role_ROLE_JUMPOINT}}
		var recs []*pb.TunnelRecord
		for i := range n {
			start := now.Add(-time.Hour + time.Duration(i)*time.Second)
			recs = append(recs, &pb.TunnelRecord{Technician: []byte(tech), Target: "10.20.7.8:22", GrantNonce: []byte{1, byte(i)},
				StartedUnixNano: start.UnixNano(), EndedUnixNano: start.Add(time.Second).UnixNano(), BytesIn: uint64(i)})
		}
		// Two identical records: both are audited, once each.
		recs = append(recs, recs[n-1])
		// The second transaction (on Badger the only one) loses every
		// retry: its read of tom's key binding changes before each commit.
		var commits atomic.Int32
		var failing atomic.Bool
		failing.Store(true)
		first := int32(1)
		if b.name == "badger" {
			first = 0
		}
		st.beforeCommit = func() {
			if commits.Add(1) > first && failing.Load() {
				_ = st.kv.update(func(kv kvTxn) error { return kv.set([]byte("k/"+string(tech)), []byte("tom")) }, nil)
			}
		}
		report := &pb.JumpointACLRequest{Tunnels: recs}
		if err := svc.auditTunnels(jp, report); catalog.CodeOf(err) != catalog.CodeAuditFailed {
			t.Fatalf("report with a failing transaction: %v, want audit_failed", err)
		}
		want := 8 // the first chunk
		if b.name == "badger" {
			want = 0
		}
		if got := countTunnelEvents(t, st); got != want {
			t.Fatalf("%d events after the failed report, want %d", got, want)
		}
		failing.Store(false)
		for range 2 {
			if err := svc.auditTunnels(jp, report); err != nil {
				t.Fatal(err)
			}
			if got := countTunnelEvents(t, st); got != n+1 {
				t.Fatalf("%d events after the resend, want %d", got, n+1)
			}
		}
		if b.shared {
			other := b.open(t)
			defer other.Close()
			if err := serviceOver(t, other, now.Add(time.Minute)).auditTunnels(jp, report); err != nil {
				t.Fatal(err)
			}
			if got := countTunnelEvents(t, st); got != n+1 {
				t.Fatalf("%d events after a resend to another coordinator, want %d", got, n+1)
			}
		}
		// Another jumpoint reporting the same records audits its own.
		jp2 := &caller{peer: "plant-b-key", user: &pb.User{Name: "plant-b", Role: pb.Role_ROLE_JUMPOINT}}
		if err := svc.auditTunnels(jp2, report); err != nil {
			t.Fatal(err)
		}
		if got := countTunnelEvents(t, st); got != 2*(n+1) {
			t.Fatalf("%d events after plant-b's report, want %d", got, 2*(n+1))
		}
	})
}

// Markers are swept a week after both the tunnel's end and their writing.
func TestTunnelMarkersSwept(t *testing.T) {
	st, err := OpenStore(t.TempDir(), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	jp := &caller{peer: "plant-a-key", user: &pb.User{Name: "plant-a", Role: pb.Role_ROLE_JUMPOINT}}
	old := &pb.TunnelRecord{Target: "10.20.7.8:22", StartedUnixNano: now.Add(-9 * 24 * time.Hour).UnixNano(), EndedUnixNano: now.Add(-8 * 24 * time.Hour).UnixNano()}
	// Reported late: its marker is young, and stays.
	if err := serviceOver(t, st, now).auditTunnels(jp, &pb.JumpointACLRequest{Tunnels: []*pb.TunnelRecord{old}}); err != nil {
		t.Fatal(err)
	}
	if got := countMarks(t, st); got != 1 {
		t.Fatalf("%d markers, want 1", got)
	}
	fresh := &pb.TunnelRecord{Target: "10.20.7.9:22", StartedUnixNano: now.Add(7 * 24 * time.Hour).UnixNano(), EndedUnixNano: now.Add(8 * 24 * time.Hour).UnixNano()}
	if err := serviceOver(t, st, now.Add(8*24*time.Hour+time.Minute)).auditTunnels(jp, &pb.JumpointACLRequest{Tunnels: []*pb.TunnelRecord{fresh}}); err != nil {
		t.Fatal(err)
	}
	if got := countMarks(t, st); got != 1 {
		t.Fatalf("%d markers after the sweep, want 1 (the fresh one)", got)
	}
}

func countTunnelEvents(t *testing.T, st *Store) int {
	t.Helper()
	n := 0
	err := st.View(func(tx *Tx) error {
		return tx.kv.scan([]byte("a/"), nil, false, func(k, v []byte) (bool, error) {
			n++
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func countMarks(t *testing.T, st *Store) int {
	t.Helper()
	n := 0
	err := st.View(func(tx *Tx) error {
		return tx.kv.scan([]byte(tunnelMarkPrefix), nil, false, func(k, v []byte) (bool, error) {
			n++
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
