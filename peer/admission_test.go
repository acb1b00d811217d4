package peer_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// A channel's admission asks whether the peer is disabled by the site's
// statement the daemon holds, verified once per statement (issue 17: not
// config.json and state.json read and the statement verified again at
// every channel): a disabled marker its user made counts while the site
// does not restrict the peer, not while it does, and admission follows
// each new statement the coordinator sends.
func TestAdmissionFollowsTheStatementTheDaemonHolds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the marker to another user")
	}
	t.Parallel() // a site of its own, mostly waiting (harness_test.go)
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	restrict := func(on bool) {
		t.Helper()
		v := "false"
		if on {
			v = "true"
		}
		if _, err := site.Admin.SetSettings(ctx, map[string]string{"restrict-local-uninstall": v}); err != nil {
			t.Fatal(err)
		}
	}
	restrict(true)
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "m"})
	// The user's own marker (not root's): it counts only while unrestricted.
	marker := filepath.Join(h.dir, "var", "disabled")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(marker, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	open := func() error {
		j, err := site.Admin.Jump(ctx, "m", grant.Exec)
		if err != nil {
			return err
		}
		defer j.Close()
		ch, err := j.Open(ctx, execOpen("true"))
		if err == nil {
			ch.Close()
		}
		return err
	}
	// The welcome's statement may follow the peer's online status by a
	// moment; once admitted, again: by the statement already verified.
	coordinatortest.Eventually(t, 10*time.Second, "restricted: admitted despite the user's marker", func() bool { return open() == nil })
	if err := open(); err != nil {
		t.Fatalf("restricted, the user's marker disabled the peer: %v", err)
	}
	// A grant issued while restricted, used once the peer holds the
	// statement that lifts the restriction (it then tells the coordinator
	// it is disabled): the peer's own admission refuses it.
	j, err := site.Admin.Jump(ctx, "m", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	restrict(false)
	h.waitStatus(h.id(), "disabled")
	_, err = j.Open(ctx, execOpen("true"))
	coordinatortest.WantCode(t, err, catalog.CodePeerDisabled)
	restrict(true)
	h.waitStatus(h.id(), "online")
	if err := open(); err != nil {
		t.Fatalf("restricted again: %v", err)
	}
}
