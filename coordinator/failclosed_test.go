package coordinator

import (
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// failClosedSite is a service over a real Badger holding peers with the
// given settings, each online (a session attached without a stream: these
// tests never send to the peer).
func failClosedSite(t *testing.T, peers ...*pb.InstallerDefaults) (*Service, *Store, []peer.ID) {
	t.Helper()
	st, err := OpenStore(filepath.Join(t.TempDir(), "db"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var ids []peer.ID
	err = st.Update(func(tx *Tx) error {
		if err := tx.PutSessionPolicy(&pb.SessionPolicy{Name: "exec-only", Exec: true}); err != nil {
			return err
		}
		for i, d := range peers {
			rec := fakePeer(t, i, "user:root", now)
			rec.Settings = d
			ids = append(ids, peer.ID(rec.GetId()))
			if err := tx.PutPeer(rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	svc := serviceOver(t, st, now)
	for _, id := range ids {
		svc.peers.attach(id, &peerSession{id: id})
	}
	return svc, st, ids
}

// serviceOver is a service over st with a fresh site key and a manual
// clock at now.
func serviceOver(t *testing.T, st *Store, now time.Time) *Service {
	t.Helper()
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	signer, _ := mesh.NewKeySigner(key)
	svc, err := NewService(ServiceConfig{Store: st, Signer: signer, Clock: mesh.NewManualClock(now)})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

var rootCaller = &caller{peer: "root-console", user: &pb.User{Name: "root", Role: pb.Role_ROLE_ADMIN}}

func wantJumpCode(t *testing.T, svc *Service, ref string, capability uint32, code catalog.Code) {
	t.Helper()
	resp, err := svc.jump(rootCaller, &pb.JumpRequest{Ref: ref, Capability: capability})
	if catalog.CodeOf(err) != code {
		t.Fatalf("jump %s: %v (code %q), want %q", ref, err, catalog.CodeOf(err), code)
	}
	if code != "" && resp.GetJump().GetGrant() != nil {
		t.Fatalf("jump %s: refused with %s yet a grant was returned", ref, code)
	}
}

// Issue 11, finding 2: a peer whose session or jump policy no longer
// exists (deleting is refused now; the store is edited directly, as a race
// or a restore could leave it) allows no jump at all, and says why.
func TestMissingPolicyDeniesEveryJump(t *testing.T) {
	svc, _, _ := failClosedSite(t,
		&pb.InstallerDefaults{Name: "ok", SessionPolicyPresent: "exec-only", SessionPolicyNotPresent: "exec-only"},
		&pb.InstallerDefaults{Name: "no-present", SessionPolicyPresent: "gone", SessionPolicyNotPresent: "exec-only"},
		&pb.InstallerDefaults{Name: "no-absent", SessionPolicyPresent: "exec-only", SessionPolicyNotPresent: "gone"},
		&pb.InstallerDefaults{Name: "no-schedule", JumpPolicy: "gone"},
		&pb.InstallerDefaults{Name: "none"})
	wantJumpCode(t, svc, "ok", grant.Exec, "")
	wantJumpCode(t, svc, "ok", grant.Shell, catalog.CodePermissionDenied)
	wantJumpCode(t, svc, "none", grant.Shell, "") // no policy named: no restriction
	for _, ref := range []string{"no-present", "no-absent", "no-schedule"} {
		for _, c := range []uint32{grant.Exec, grant.Shell, grant.FileTransfer, grant.Forward, 0} {
			wantJumpCode(t, svc, ref, c, catalog.CodePolicyMissing)
		}
	}
	// The refusals are audited with their code.
	var n int
	err := svc.store.View(func(tx *Tx) error {
		events, _, err := tx.AuditPage(time.Unix(0, 0), nil, func(e *pb.AuditEvent) bool {
			return e.GetKind() == AuditRefused && e.GetCode() == string(catalog.CodePolicyMissing)
		}, 0)
		n = len(events)
		return err
	})
	if err != nil || n != 15 {
		t.Fatalf("%d policy_missing refusals audited (%v), want 15", n, err)
	}
}

// Issue 11, finding 13: a grant whose audit event cannot be stored is not
// issued. The store is a real Badger, closed under the service.
func TestGrantNotIssuedWhenAuditFails(t *testing.T) {
	svc, st, _ := failClosedSite(t, &pb.InstallerDefaults{Name: "web-01"})
	wantJumpCode(t, svc, "web-01", grant.Exec, "")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	wantJumpCode(t, svc, "web-01", grant.Exec, catalog.CodeAuditFailed)
	// The refused grant does not hold a session start slot.
	svc.jumps.mu.Lock()
	inflight := len(svc.jumps.inflight)
	svc.jumps.mu.Unlock()
	if inflight != 1 {
		t.Fatalf("%d session starts in flight, want 1 (the first, audited, grant)", inflight)
	}
}
