package peer_test

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	libp2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

// Issue 17: a console opens its channel while it asks the coordinator for
// the grant (channel.ProtocolGrantFollows), and sends the grant on it when
// it has it. The peer runs nothing before the grant arrives, and checks it
// as it checks a grant in the open: these tests are the attacks of
// TestPeerRefusesBadGrants and the policy and revocation tests, with the
// grant following the open.

// grantAfterOpen connects c to j's peer, opens open there with its grant to
// follow, then sends g: the peer's answer.
func grantAfterOpen(t *testing.T, c *console.Client, j *console.Jump, open *pb.ChannelOpen, g *pb.JumpGrant) (*channel.Channel, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := j.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	pd, err := channel.OpenPending(ctx, c.Host(), j.ID, open)
	if err != nil {
		t.Fatalf("open before the grant: %v", err)
	}
	ch, _, err := pd.Grant(ctx, g)
	return ch, err
}

// grantAfterOpenRuns wants the exec channel to run argv through to its end.
func grantAfterOpenRuns(t *testing.T, c *console.Client, j *console.Jump, g *pb.JumpGrant, argv ...string) string {
	t.Helper()
	ch, err := grantAfterOpen(t, c, j, execOpen(argv...), g)
	if err != nil {
		t.Fatalf("%q with its grant after the open: %v", argv, err)
	}
	defer ch.Close()
	var out strings.Builder
	st, err := console.Exec(context.Background(), ch, console.ExecIO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: io.Discard})
	if err != nil || st.GetCode() != 0 {
		t.Fatalf("%q: %v %v", argv, st, err)
	}
	return out.String()
}

func TestPeerChecksAGrantThatFollows(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (harness_test.go)
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "a"})
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "b"})
	jumpA, err := site.Admin.Jump(ctx, "a", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	jumpB, err := site.Admin.Jump(ctx, "b", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	refused := func(c *console.Client, j *console.Jump, g *pb.JumpGrant, code catalog.Code) {
		t.Helper()
		ch, err := grantAfterOpen(t, c, j, execOpen("true"), g)
		if err == nil {
			ch.Close()
		}
		coordinatortest.WantCode(t, err, code)
	}
	// Forged: one flipped bit in the signature.
	forged := &pb.JumpGrant{Body: jumpA.Grant.GetBody(), Signature: append([]byte(nil), jumpA.Grant.GetSignature()...)}
	forged.Signature[0] ^= 1
	refused(site.Admin, jumpA, forged, catalog.CodeGrantInvalid)
	// A's grant sent to B: a grant for another peer.
	refused(site.Admin, jumpB, jumpA.Grant, catalog.CodeGrantInvalid)
	// A's grant sent by another technician's console.
	thief := site.User("mallory", pb.Role_ROLE_ADMIN)
	jumpThief, err := thief.Jump(ctx, "a", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	refused(thief, jumpThief, jumpA.Grant, catalog.CodeGrantInvalid)
	// No grant at all in the ChannelGrant.
	refused(site.Admin, jumpA, nil, catalog.CodeGrantInvalid)
	// The genuine grant runs the command, and again on its connection...
	if out := grantAfterOpenRuns(t, site.Admin, jumpA, jumpA.Grant, "echo", "after"); out != "after\n" {
		t.Fatalf("output %q", out)
	}
	grantAfterOpenRuns(t, site.Admin, jumpA, jumpA.Grant, "true")
	// ... but replayed on a new connection it is refused.
	site.Admin.Host().Network().ClosePeer(jumpA.ID)
	refused(site.Admin, jumpA, jumpA.Grant, catalog.CodeGrantInvalid)
	// Every refusal reached the audit log, as with the grant in the open.
	coordinatortest.Eventually(t, 10*time.Second, "refusals audited", func() bool {
		events, _ := site.Admin.Audit(ctx, &pb.AuditRequest{})
		n := 0
		for _, e := range events {
			if e.GetKind() == "refused" && e.GetCode() == string(catalog.CodeGrantInvalid) {
				n++
			}
		}
		return n >= 5
	})
}

// A grant for one command (or kind) does not open a channel of another
// that came before it: the peer checks the open it holds against the
// grant that follows.
func TestGrantThatFollowsIsForItsCommandAndKind(t *testing.T) {
	t.Parallel()
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	p := &pb.SessionPolicy{Name: "monitoring", Exec: true, AllowCommands: []string{"echo allowed"}}
	if _, err := site.Admin.PutSessionPolicy(ctx, p, true); err != nil {
		t.Fatal(err)
	}
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "mon-01", SessionPolicyPresent: "monitoring", SessionPolicyNotPresent: "monitoring"})
	j, err := site.Admin.JumpExec(ctx, "mon-01", []string{"echo", "allowed"})
	if err != nil {
		t.Fatal(err)
	}
	for _, open := range []*pb.ChannelOpen{
		execOpen("sh", "-c", "id"), // another command
		execOpen(),                 // a shell
		{Kind: &pb.ChannelOpen_Forward{Forward: &pb.ForwardOpen{Host: "127.0.0.1", Port: 22}}},
		{Kind: &pb.ChannelOpen_File{File: &pb.FileOpen{Path: "/etc/passwd"}}},
	} {
		ch, err := grantAfterOpen(t, site.Admin, j, open, j.Grant)
		if err == nil {
			ch.Close()
		}
		coordinatortest.WantCode(t, err, catalog.CodePermissionDenied)
	}
	if out := grantAfterOpenRuns(t, site.Admin, j, j.Grant, "echo", "allowed"); out != "allowed\n" {
		t.Fatalf("output %q", out)
	}
}

// A channel opened before a revocation, its grant sent after the peer's
// gate closed on it: refused, as a grant in an open after it would be.
func TestGrantThatFollowsAfterRevocation(t *testing.T) {
	t.Parallel()
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	alice := site.User("alice", pb.Role_ROLE_TECHNICIAN)
	if _, err := site.Admin.CreateGroup(ctx, "servers", "Servers", []*pb.GroupMember{{User: "alice"}}); err != nil {
		t.Fatal(err)
	}
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "web-01", Group: words.SharedGroupPrefix + "servers"})
	j, err := alice.Jump(ctx, "web-01", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	// A session of hers runs; the revocation will close it.
	running, err := grantAfterOpen(t, alice, j, execOpen("cat"), j.Grant)
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	pd, err := channel.OpenPending(ctx, alice.Host(), j.ID, execOpen("echo", "late"))
	if err != nil {
		t.Fatal(err)
	}
	if err := site.Admin.RemoveUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// The peer applied the revocation: her running session ends.
	done := make(chan error, 1)
	go func() {
		_, err := console.Exec(context.Background(), running, console.ExecIO{Stdin: blockingReader{ctx}, Stdout: io.Discard, Stderr: io.Discard})
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the revocation did not reach the running session")
	}
	ch, _, err := pd.Grant(ctx, j.Grant)
	if err == nil {
		ch.Close()
	}
	coordinatortest.WantCode(t, err, catalog.CodeGrantRevoked)
}

// TestJumpOpensItsChannelBeforeTheGrant: the console's jump with
// Need.Open, to a peer it reached before (the peer cache), opens its
// channel while it asks for the grant, and the session runs on it.
func TestJumpOpensItsChannelBeforeTheGrant(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "web-01"})
	c := site.Admin
	c.SetPeerCache(t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	jump := func(word string) []console.Phase {
		tm := console.NewTiming(time.Now())
		c.SetTiming(tm)
		defer c.SetTiming(nil)
		cmd := console.ExecCommand{Argv: []string{"echo", word}}
		var out strings.Builder
		err := c.WithJump(ctx, "web-01", cmd.Need(), func(j *console.Jump) error {
			s, err := j.Exec(ctx, cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			_, err = s.Run(ctx, console.ExecIO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: io.Discard})
			return err
		})
		if err != nil || out.String() != word+"\n" {
			t.Fatalf("jump: %q %v", out.String(), err)
		}
		return tm.Phases()
	}
	early := func(phases []console.Phase) bool {
		for _, p := range phases {
			if strings.HasPrefix(p.Name, "grant on the early channel") {
				return true
			}
		}
		return false
	}
	if early(jump("first")) {
		t.Fatal("the first jump (nothing cached) opened its channel early")
	}
	if !early(jump("second")) {
		t.Fatal("the second jump did not open its channel before the grant")
	}
}

// TestRelayedJumpDoesNotWaitForTheEarlyDial: the peer cache names the
// peer at an address that takes the TCP connection and never answers (a
// stale address behind a NAT that swallows the handshake), and the jump
// goes through the relay: its channel opens without waiting for the early
// dial, which would hold it until ConnectTimeout.
func TestRelayedJumpDoesNotWaitForTheEarlyDial(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	r := startRelay(t, site, "relay-1")
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "behind-nat"})
	waitReservation(t, h, r)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepting := make(chan struct{})
	var held []net.Conn
	defer func() {
		silent.Close()
		<-accepting
		for _, c := range held {
			c.Close()
		}
	}()
	go func() {
		defer close(accepting)
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	home := t.TempDir()
	cache := []map[string]any{{"ref": "behind-nat", "id": h.id(), "at": time.Now().UTC(),
		"addrs": []string{"/ip4/127.0.0.1/tcp/" + strconv.Itoa(silent.Addr().(*net.TCPAddr).Port)}}}
	if err := mesh.WriteJSONFile(filepath.Join(home, console.PeerCacheFile), cache, 0o600); err != nil {
		t.Fatal(err)
	}
	c := site.Admin
	c.SetPeerCache(home)
	defer c.SetPeerCache(t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := console.ExecCommand{Argv: []string{"echo", "relayed"}}
	coordinatortest.Eventually(t, 20*time.Second, "a relayed jump with a silent cached address", func() bool {
		if id, err := libp2ppeer.Decode(h.id()); err == nil {
			site.Admin.Host().Network().ClosePeer(id)
		}
		start := time.Now()
		j, err := c.JumpFor(ctx, "behind-nat", cmd.Need())
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		j.ForceRelay = true
		s, err := j.Exec(ctx, cmd)
		if err != nil {
			t.Logf("relayed exec: %v", err)
			return false
		}
		defer s.Close()
		if p := j.Path(); p.Kind != console.PathRelayed {
			t.Logf("path %s", p)
			return false
		}
		// The early dial holds on to the silent address for the swarm's
		// dial timeout on a local network, 5 s.
		took := time.Since(start)
		t.Logf("the relayed channel opened after %s", took)
		if took >= 4*time.Second {
			t.Fatalf("the relayed channel opened after %s: it waited for the early dial", took)
		}
		var out strings.Builder
		st, err := s.Run(ctx, console.ExecIO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: io.Discard})
		return err == nil && st.GetCode() == 0 && out.String() == "relayed\n"
	})
}
