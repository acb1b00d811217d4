package peer_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// onlinePeer installs and starts a peer with defaults d and waits for it.
func onlinePeer(t *testing.T, site *coordinatortest.Site[*console.Client], d *pb.InstallerDefaults) *host {
	t.Helper()
	h := install(t, site, site.Installer(d, 0, week()).GetKey(), peer.InstallOptions{})
	h.start()
	h.waitStatus(h.id(), "online")
	return h
}

// run executes argv on the peer through a fresh grant and returns stdout,
// stderr and the exit status.
func run(t *testing.T, c *console.Client, ref string, argv ...string) (string, string, *pb.ExitStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := c.Jump(ctx, ref, grant.Exec)
	if err != nil {
		t.Fatalf("jump %s: %v", ref, err)
	}
	ch, err := j.Open(ctx, execOpen(argv...))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer ch.Close()
	var out, errb bytes.Buffer
	st, err := console.Exec(ctx, ch, console.ExecIO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	return out.String(), errb.String(), st
}

func execOpen(argv ...string) *pb.ChannelOpen {
	return &pb.ChannelOpen{Kind: &pb.ChannelOpen_Exec{Exec: &pb.ExecOpen{Argv: argv}}}
}

func TestJumpRunsACommand(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "web-01"})
	out, errOut, st := run(t, site.Admin, "web-01", "sh", "-c", "echo hello; echo oops >&2; exit 3")
	if out != "hello\n" || errOut != "oops\n" || st.GetCode() != 3 {
		t.Fatalf("out %q err %q status %v", out, errOut, st)
	}
	// The coordinator audited the grant, the start and the end.
	coordinatortest.Eventually(t, 10*time.Second, "start and end in the audit log", func() bool {
		events, err := site.Admin.Audit(site.Ctx(), &pb.AuditRequest{Peer: h.id()})
		kinds := map[string]int{}
		for _, e := range events {
			kinds[e.GetKind()]++
			if e.GetKind() == "end" && e.GetExit().GetCode() != 3 {
				t.Fatalf("audited exit %v", e.GetExit())
			}
		}
		return err == nil && kinds["grant"] == 1 && kinds["start"] == 1 && kinds["end"] == 1
	})
	v, _ := site.Admin.Peer(site.Ctx(), "web-01")
	if v.GetPeer().GetLastAccessUnix() == 0 {
		t.Fatal("last access not recorded")
	}
}

// refusedAt asks for a grant and wants code; the refusal is audited.
func refusedAt(t *testing.T, site *coordinatortest.Site[*console.Client], c *console.Client, ref string, capability uint32, code catalog.Code) {
	t.Helper()
	_, err := c.Jump(site.Ctx(), ref, capability)
	coordinatortest.WantCode(t, err, code)
	events, err := site.Admin.Audit(site.Ctx(), &pb.AuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.GetKind() == "refused" && e.GetCode() == string(code) {
			return
		}
	}
	t.Fatalf("refusal %s not audited", code)
}

func TestGrantRefusals(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (harness_test.go)
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	mustSet := func(kv ...string) {
		t.Helper()
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		if _, err := site.Admin.SetSettings(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	w, _ := coordinator.ParseWindow("mon 00:00-00:01")
	if _, err := site.Admin.PutJumpPolicy(ctx, &pb.JumpPolicy{Name: "closed", TimeZone: "UTC", Windows: []*pb.Window{w}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := site.Admin.PutSessionPolicy(ctx, &pb.SessionPolicy{Name: "files-only", FileTransfer: true}, true); err != nil {
		t.Fatal(err)
	}
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "open"})
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "scheduled", JumpPolicy: "closed"})
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "locked", SessionPolicyPresent: "files-only", SessionPolicyNotPresent: "files-only"})
	gone := onlinePeer(t, site, &pb.InstallerDefaults{Name: "gone"})
	gone.stop()
	gone.waitStatus(gone.id(), "offline")
	tech := site.User("tina", pb.Role_ROLE_TECHNICIAN)

	refusedAt(t, site, tech, "open", grant.Exec, catalog.CodePeerNotFound) // not in her lists
	refusedAt(t, site, site.Admin, "nothing-like-this", grant.Exec, catalog.CodePeerNotFound)
	refusedAt(t, site, site.Admin, "gone", grant.Exec, catalog.CodePeerOffline)
	refusedAt(t, site, site.Admin, "scheduled", grant.Exec, catalog.CodeJumpPolicyClosed)
	refusedAt(t, site, site.Admin, "locked", grant.Exec, catalog.CodePermissionDenied)

	// At most max-session-starts grants in flight: the second is "too busy".
	mustSet("max-session-starts", "1")
	if _, err := site.Admin.Jump(ctx, "open", grant.Exec); err != nil {
		t.Fatal(err)
	}
	refusedAt(t, site, site.Admin, "open", grant.Exec, catalog.CodeServerBusy)
	site.Clock.Advance(61 * time.Second) // the unused grant expires
	mustSet("max-session-starts", "20")

	// Concurrent jumps off: a second technician is refused while one is in.
	mustSet("concurrent-jumps", "false")
	site.User("ops", pb.Role_ROLE_ADMIN)
	other := site.Login("ops2", mustInvite(t, site, "ops"))
	j, err := site.Admin.Jump(ctx, "open", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := j.Open(ctx, execOpen("sleep", "30"))
	if err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "the session known to the coordinator", func() bool {
		_, err := other.Jump(ctx, "open", grant.Exec)
		return catalog.CodeOf(err) == catalog.CodeSessionInUse
	})
	refusedAt(t, site, other, "open", grant.Exec, catalog.CodeSessionInUse)
	ch.Reset()
}

func mustInvite(t *testing.T, site *coordinatortest.Site[*console.Client], user string) string {
	inv, err := site.Admin.InviteUser(site.Ctx(), user, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return inv.GetCode()
}

func TestPeerRefusesBadGrants(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (harness_test.go)
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	a := onlinePeer(t, site, &pb.InstallerDefaults{Name: "a"})
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "b"})
	openWith := func(j *console.Jump, g *pb.JumpGrant) error {
		saved := j.Grant
		j.Grant = g
		defer func() { j.Grant = saved }()
		ch, err := j.Open(ctx, execOpen("true"))
		if err == nil {
			ch.Close()
		}
		return err
	}
	jumpA, err := site.Admin.Jump(ctx, "a", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	jumpB, err := site.Admin.Jump(ctx, "b", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	// Forged: one flipped bit in the signature.
	forged := &pb.JumpGrant{Body: jumpA.Grant.GetBody(), Signature: append([]byte(nil), jumpA.Grant.GetSignature()...)}
	forged.Signature[0] ^= 1
	coordinatortest.WantCode(t, openWith(jumpA, forged), catalog.CodeGrantInvalid)
	// A's grant shown to B.
	coordinatortest.WantCode(t, openWith(jumpB, jumpA.Grant), catalog.CodeGrantInvalid)
	// A's grant presented by another technician's console.
	thief := site.User("mallory", pb.Role_ROLE_ADMIN)
	jumpThief, err := thief.Jump(ctx, "a", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	coordinatortest.WantCode(t, openWith(jumpThief, jumpA.Grant), catalog.CodeGrantInvalid)
	// The genuine grant works, and keeps working on its connection...
	if err := openWith(jumpA, jumpA.Grant); err != nil {
		t.Fatal(err)
	}
	if err := openWith(jumpA, jumpA.Grant); err != nil {
		t.Fatalf("second channel of the session: %v", err)
	}
	// ... but replayed on a new connection it is refused.
	site.Admin.Host().Network().ClosePeer(jumpA.ID)
	coordinatortest.WantCode(t, openWith(jumpA, jumpA.Grant), catalog.CodeGrantInvalid)
	// An expired grant never used is refused.
	late, err := site.Admin.Jump(ctx, "a", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	site.Admin.Host().Network().ClosePeer(late.ID)
	site.Clock.Advance(61 * time.Second)
	coordinatortest.WantCode(t, openWith(late, late.Grant), catalog.CodeGrantInvalid)

	// Disabled locally: the peer refuses even a good grant.
	site.Clock.Advance(time.Second)
	if err := peer.SetDisabled(a.dir, true, 1000); err != nil {
		t.Fatal(err)
	}
	fresh, err := site.Admin.Jump(ctx, "a", grant.Exec) // the coordinator has not heard yet
	if err == nil {
		coordinatortest.WantCode(t, openWith(fresh, fresh.Grant), catalog.CodePeerDisabled)
	}
	// Every refusal at the peer reached the audit log.
	coordinatortest.Eventually(t, 10*time.Second, "refusals audited", func() bool {
		events, _ := site.Admin.Audit(ctx, &pb.AuditRequest{Peer: a.id()})
		n := 0
		for _, e := range events {
			if e.GetKind() == "refused" && e.GetCode() == string(catalog.CodeGrantInvalid) {
				n++
			}
		}
		return n >= 4
	})
	_ = channel.Protocol
}
