package peer_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Issue 11 #10: an exec grant is not a shell. Each attack asks the
// coordinator as a patched console would (the CLI asks for shell with -t)
// and then goes to the peer directly with the grant it got.

func TestExecOnlyPolicyGivesNoPTY(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	if _, err := site.Admin.PutSessionPolicy(ctx, &pb.SessionPolicy{Name: "exec-only", Exec: true}, true); err != nil {
		t.Fatal(err)
	}
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "web-02", SessionPolicyPresent: "exec-only", SessionPolicyNotPresent: "exec-only"})

	// What the CLI asks for `jump web-02 -t -- /bin/sh -i`: refused when issued.
	refusedAt(t, site, site.Admin, "web-02", grant.Shell, catalog.CodePermissionDenied)
	// A console that asks for exec and then opens a PTY: the peer refuses.
	j, err := site.Admin.Jump(ctx, "web-02", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	_, err = j.Open(ctx, &pb.ChannelOpen{Kind: &pb.ChannelOpen_Exec{Exec: &pb.ExecOpen{Argv: []string{"/bin/sh", "-i"}, Tty: true}}})
	coordinatortest.WantCode(t, err, catalog.CodePermissionDenied)
	// Without a PTY the command runs: exec still means exec.
	if out, _, st := run(t, site.Admin, "web-02", "echo", "ok"); out != "ok\n" || st.GetCode() != 0 {
		t.Fatalf("exec under exec-only: %q %v", out, st)
	}
}

func TestCommandAllowList(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	p := &pb.SessionPolicy{Name: "monitoring", Exec: true, AllowCommands: []string{"echo allowed", "uname *"}}
	if _, err := site.Admin.PutSessionPolicy(ctx, p, true); err != nil {
		t.Fatal(err)
	}
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "mon-01", SessionPolicyPresent: "monitoring", SessionPolicyNotPresent: "monitoring"})

	// Listed commands run.
	for _, argv := range [][]string{{"echo", "allowed"}, {"uname", "-s"}} {
		if _, _, st := runExec(t, site.Admin, "mon-01", &pb.ExecOpen{Argv: argv}); st.GetCode() != 0 {
			t.Errorf("%q under its allow-list: %v", argv, st)
		}
	}
	// A command outside the list: refused when issued...
	_, err := site.Admin.JumpExec(ctx, "mon-01", []string{"cat", "/etc/passwd"})
	coordinatortest.WantCode(t, err, catalog.CodePermissionDenied)
	// ...and at the peer, for a console that named another command (or
	// none) to the coordinator, or tries to steer an allowed one.
	for name, open := range map[string]*pb.ExecOpen{
		"another command":  {Argv: []string{"cat", "/etc/passwd"}},
		"a shell":          {Argv: []string{"sh", "-c", "echo allowed"}},
		"an extra arg":     {Argv: []string{"echo", "allowed", "more"}},
		"a path as argv0":  {Argv: []string{"/tmp/echo", "allowed"}},
		"its environment":  {Argv: []string{"echo", "allowed"}, Env: map[string]string{"LD_PRELOAD": "/tmp/evil.so"}},
		"a PTY for a list": {Argv: []string{"echo", "allowed"}, Tty: true},
	} {
		j, err := site.Admin.JumpExec(ctx, "mon-01", []string{"echo", "allowed"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = j.Open(ctx, &pb.ChannelOpen{Kind: &pb.ChannelOpen_Exec{Exec: open}})
		if catalog.CodeOf(err) != catalog.CodePermissionDenied {
			t.Errorf("%s (%q): %v; want permission_denied from the peer", name, open.GetArgv(), err)
		}
	}
}

// runExec runs open through a fresh exec grant that names its command.
func runExec(t *testing.T, c *console.Client, ref string, open *pb.ExecOpen) (string, string, *pb.ExitStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := c.JumpExec(ctx, ref, open.GetArgv())
	if err != nil {
		t.Fatalf("jump %s: %v", ref, err)
	}
	ch, err := j.Open(ctx, &pb.ChannelOpen{Kind: &pb.ChannelOpen_Exec{Exec: open}})
	if err != nil {
		t.Fatalf("open %q: %v", open.GetArgv(), err)
	}
	defer ch.Close()
	var out, errb bytes.Buffer
	st, err := console.Exec(ctx, ch, console.ExecIO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	return out.String(), errb.String(), st
}
