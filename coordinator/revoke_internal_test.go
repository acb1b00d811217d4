package coordinator

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Grants and revocations on one timeline, with a clock that stands still
// (as in tests) and within one second (as in life): a revocation covers
// every grant stamped before it, and no grant stamped after it.
func TestRevokerOrdersGrantsAndRevocations(t *testing.T) {
	var r revoker
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	before := r.grantTime(now).Unix()
	through := r.stamp(now)
	after := r.grantTime(now).Unix()
	if before > through || after <= through {
		t.Fatalf("grant %d, revocation through %d, grant %d", before, through, after)
	}
	// A second revocation in the same frozen second still covers the
	// grant stamped after the first one.
	through2 := r.stamp(now)
	if after > through2 {
		t.Fatalf("grant %d not covered by the revocation through %d", after, through2)
	}
	if next := r.grantTime(now.Add(500 * time.Millisecond)).Unix(); next <= through2 {
		t.Fatalf("grant %d not after the revocation through %d", next, through2)
	}
	// A clock already past the revocations is used as it is.
	later := now.Add(time.Hour)
	if got := r.grantTime(later); !got.Equal(later) {
		t.Fatalf("grant time %v, want %v", got, later)
	}
}

// BenchmarkCheckJumpWindows: one periodic check with 20,000 online peers,
// every one with a jump policy whose window is open (nothing to revoke).
func BenchmarkCheckJumpWindows(b *testing.B) {
	st, err := OpenStore(filepath.Join(b.TempDir(), "db"), StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	w, _ := ParseWindow("daily 00:00-24:00")
	if err := st.Update(func(tx *Tx) error {
		return tx.PutJumpPolicy(&pb.JumpPolicy{Name: "always", TimeZone: "UTC", Windows: []*pb.Window{w}})
	}); err != nil {
		b.Fatal(err)
	}
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	signer, _ := mesh.NewKeySigner(key)
	svc, err := NewService(ServiceConfig{Store: st, Signer: signer})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 20000 {
		id := peer.ID(fmt.Sprintf("peer-%05d", i))
		svc.peers.put(&pb.Peer{Id: []byte(id), Settings: &pb.InstallerDefaults{Name: string(id), JumpPolicy: "always"}})
		svc.peers.attach(id, &peerSession{id: id})
	}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		if n := svc.CheckJumpWindows(now); n != 0 {
			b.Fatalf("revoked %d", n)
		}
	}
}
