package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/jumpmesh/jumpmesh/jumpoint"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// viaSite is a coordinator process, a jumpoint daemon (jumpoint.New) on
// loopback, and a real OpenSSH server on loopback that runs no peer: the
// agentless target, in the jumpoint's allow list for the jump group plant.
// tom is in plant, tess is not. The consoles run ssh through a spy first in
// PATH that logs each start and execs the real client.
type viaSite struct {
	admin, tom, tess string
	sd               *sshd
	jumpoint         *jumpoint.Jumpoint
	closedPort       string // in the allow list, nothing listens
	path             string // PATH with the spy first
	spyLog           string
	knownHosts       string
}

func newViaSite(t *testing.T) *viaSite {
	t.Helper()
	sd := startSSHD(t) // skips without OpenSSH
	realSSH, _ := exec.LookPath("ssh")
	dir, init, coord := newSite(t)
	s := &viaSite{admin: filepath.Join(dir, "admin"), tom: filepath.Join(dir, "tom"), tess: filepath.Join(dir, "tess"), sd: sd,
		spyLog: filepath.Join(dir, "ssh-starts"), knownHosts: filepath.Join(dir, "known_hosts")}
	ok(t, s.admin, nil, "login", coord.addr, init.Invite)

	var inv struct{ Code string }
	ok(t, s.admin, &inv, "jumpoint", "invite", "plant-a", "--json")
	j, err := jumpoint.New(t.Context(), jumpoint.Config{DataDir: filepath.Join(dir, "plant-a"), Coordinator: coord.addr, Invite: inv.Code,
		Listen: []string{"/ip4/127.0.0.1/tcp/0"}, HTTPAddr: "off", Refresh: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("starting the jumpoint: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	s.jumpoint, s.closedPort = j, freeTCPPort(t)

	for _, u := range []struct{ name, home string }{{"tom", s.tom}, {"tess", s.tess}} {
		ok(t, s.admin, &inv, "user", "invite", u.name, "--role", "technician", "--json")
		ok(t, u.home, nil, "login", coord.addr, inv.Code)
	}
	ok(t, s.admin, nil, "group", "create", "plant", "--member", "tom")
	ok(t, s.admin, nil, "jumpoint", "set", "plant-a", "--allow", "127.0.0.1:"+sd.port, "--allow", "127.0.0.1:"+s.closedPort, "--group", "plant")

	spy := filepath.Join(dir, "spy")
	os.MkdirAll(spy, 0o755)
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %s\nexec %s \"$@\"\n", s.spyLog, realSSH)
	if err := os.WriteFile(filepath.Join(spy, "ssh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s.path = spy + string(os.PathListSeparator) + os.Getenv("PATH")
	return s
}

// cmd is jumpmesh as the console in home, with the spy in PATH.
func (s *viaSite) cmd(home string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "JUMPMESH_HOME="+home, "PATH="+s.path)
	return cmd
}

// run runs jumpmesh to the end.
func (s *viaSite) run(t *testing.T, home string, args ...string) result {
	t.Helper()
	cmd := s.cmd(home, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("jumpmesh %s did not end\nstdout: %s\nstderr: %s", strings.Join(args, " "), out.String(), errb.String())
	}
	return result{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
}

// sshStarts is how many times the consoles started ssh, and the last
// command line.
func (s *viaSite) sshStarts() (int, string) {
	b, _ := os.ReadFile(s.spyLog)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(b) == 0 {
		return 0, ""
	}
	return len(lines), lines[len(lines)-1]
}

// target is USER@127.0.0.1:PORT of the sshd.
func (s *viaSite) target() string { return s.sd.user + "@127.0.0.1:" + s.sd.port }

// sshOpts are the client options for the test's sshd: its user key, a
// known_hosts of the test's own, no prompt.
func (s *viaSite) sshOpts(checking string) []string {
	return []string{"-i", s.sd.userKey, "-o", "StrictHostKeyChecking=" + checking, "-o", "UserKnownHostsFile=" + s.knownHosts,
		"-o", "HashKnownHosts=no", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"}
}

// jumpVia is the argument list of jump --via plant-a to the sshd running
// the remote command.
func (s *viaSite) jumpVia(checking, remote string, flags ...string) []string {
	args := append([]string{"jump", "--via", "plant-a"}, flags...)
	args = append(append(append(args, s.target(), "--"), s.sshOpts(checking)...), remote)
	return args
}

var forwardPortRE = regexp.MustCompile(`ssh through 127\.0\.0\.1:(\d+)`)

// TestJumpViaSSH is jump --via end to end: ssh runs through a grant and a
// tunnel of the jumpoint to an sshd that runs no peer, its exit status is
// jumpmesh's, known_hosts files the key under the real target, the local
// port takes only ssh's connection, a signal to jumpmesh reaches ssh; a
// target outside the list, a technician outside the groups and an unknown
// jumpoint are refused with the catalog's error before ssh starts.
func TestJumpViaSSH(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (e2e_test.go)
	s := newViaSite(t)
	ctx := t.Context()

	// The jumpoint learns its allow list at its next refresh; until then it
	// refuses the tunnel, and ssh is not started.
	var r result
	waitFor(t, 30*time.Second, "ssh through the jumpoint", func() bool {
		r = s.run(t, s.tom, s.jumpVia("accept-new", "echo via-marker-1; exit 7", "-v")...)
		if r.code == exitJumpFailed {
			t.Logf("before the jumpoint's refresh: %q", r.stderr)
		}
		return r.code != exitJumpFailed
	})
	if r.code != 7 || !strings.Contains(r.stdout, "via-marker-1") {
		t.Fatalf("jump --via: exit %d, stdout %q, stderr %q; want 7 and the marker", r.code, r.stdout, r.stderr)
	}
	starts, argv := s.sshStarts()
	alias := "HostKeyAlias=[127.0.0.1]:" + s.sd.port
	if starts != 1 || !strings.Contains(argv, alias) || !strings.Contains(argv, "-l "+s.sd.user+" ") ||
		!strings.HasSuffix(argv, "127.0.0.1 "+strings.Join(s.sshOpts("accept-new"), " ")+" echo via-marker-1; exit 7") {
		t.Fatalf("ssh started %d times (refused attempts must not start it), last as %q", starts, argv)
	}
	m := forwardPortRE.FindStringSubmatch(r.stderr)
	if m == nil || !strings.Contains(argv, "-p "+m[1]+" ") || !strings.Contains(r.stderr, "via jumpoint plant-a") {
		t.Fatalf("jump --via -v said %q; ssh ran as %q", r.stderr, argv)
	}
	kh, _ := os.ReadFile(s.knownHosts)
	if !strings.HasPrefix(string(kh), "[127.0.0.1]:"+s.sd.port+" ") || strings.Count(string(kh), "\n") != 1 {
		t.Fatalf("known_hosts files the key under %q, want the target [127.0.0.1]:%s only", kh, s.sd.port)
	}
	// Another local port, the same key: strict checking passes.
	r = s.run(t, s.tom, s.jumpVia("yes", "echo via-marker-2")...)
	if r.code != 0 || !strings.Contains(r.stdout, "via-marker-2") {
		t.Fatalf("jump --via with the key known: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	waitFor(t, 20*time.Second, "the tunnels in the audit log", func() bool {
		var events []auditEvent
		ok(t, s.admin, &events, "audit", "--kind", "tunnel", "--json")
		n := 0
		for _, e := range events {
			if e.User == "tom" && e.Target == "127.0.0.1:"+s.sd.port && e.Jumpoint == "plant-a" && e.BytesIn > 0 && e.BytesOut > 0 {
				n++
			}
		}
		return n >= 2
	})

	t.Run("one connection", func(t *testing.T) {
		// A local user who finds the forward's port while ssh runs cannot
		// use it: the port took ssh's connection and closed.
		cmd := s.cmd(s.tom, s.jumpVia("yes", "echo via-ready; cat", "-v")...)
		stdin, _ := cmd.StdinPipe()
		var out, errb syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		waitFor(t, 20*time.Second, "the remote command started", func() bool { return strings.Contains(out.String(), "via-ready") })
		m := forwardPortRE.FindStringSubmatch(errb.String())
		if m == nil {
			t.Fatalf("no forward port in %q", errb.String())
		}
		var d net.Dialer
		if c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+m[1]); err == nil {
			c.Close()
			t.Fatalf("a second connection to the forward's port %s was accepted", m[1])
		}
		io.WriteString(stdin, "still-there\n")
		waitFor(t, 20*time.Second, "ssh's session unharmed", func() bool { return strings.Contains(out.String(), "still-there") })
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("jump --via after stdin closed: %v\n%s", err, errb.String())
		}
	})

	t.Run("signal", func(t *testing.T) {
		// SIGINT to jumpmesh reaches ssh, which ends the session; jumpmesh
		// exits with ssh's status.
		cmd := s.cmd(s.tom, s.jumpVia("yes", "echo via-sleeping; exec sleep 30")...)
		var out, errb syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		defer func() { cmd.Process.Kill(); <-done }()
		waitFor(t, 20*time.Second, "the remote command started", func() bool { return strings.Contains(out.String(), "via-sleeping") })
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
			done <- nil // for the deferred wait
		case <-time.After(20 * time.Second):
			t.Fatalf("jump --via still runs 20s after SIGINT\n%s", errb.String())
		}
		if code := cmd.ProcessState.ExitCode(); code != 255 {
			t.Fatalf("exit %d after SIGINT, want ssh's 255\n%s", code, errb.String())
		}
	})

	t.Run("terminal", func(t *testing.T) {
		// In a terminal ssh owns it: it sets it raw, so Ctrl-C is a byte
		// for the remote side, which runs its trap; jumpmesh, in the same
		// foreground process group, neither dies nor takes the key.
		remote := "trap 'echo got-int; exit 3' INT; echo via-armed; while :; do sleep 1; done"
		cmd := s.cmd(s.tom, s.jumpVia("yes", remote, "-t")...)
		cmd.Env = append(cmd.Env, "TERM=xterm")
		tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
		if err != nil {
			t.Fatal(err)
		}
		defer tty.Close()
		var screen syncBuffer
		go io.Copy(&screen, tty)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		defer func() {
			select {
			case <-done:
			default:
				cmd.Process.Kill()
				<-done
			}
		}()
		waitFor(t, 20*time.Second, "the remote trap armed", func() bool { return strings.Contains(screen.String(), "via-armed") })
		tty.Write([]byte{3})
		select {
		case <-done:
			done <- nil
		case <-time.After(20 * time.Second):
			t.Fatalf("Ctrl-C did not end the remote command\n%q", screen.String())
		}
		if code := cmd.ProcessState.ExitCode(); code != 3 {
			t.Fatalf("exit %d after Ctrl-C, want the remote trap's 3\n%q", code, screen.String())
		}
		// The terminal's last output may still be on its way to the reader.
		waitFor(t, 10*time.Second, "the remote trap's output", func() bool { return strings.Contains(screen.String(), "got-int") })
	})

	t.Run("changed host key", func(t *testing.T) {
		// Whoever answers for the target (a jumpoint operator, a host that
		// took its address) with another key is caught by ssh: the key is
		// checked under the target's name, whatever the local port.
		dir := t.TempDir()
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "other")).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
		pub, _ := os.ReadFile(filepath.Join(dir, "other.pub"))
		kh := filepath.Join(dir, "known_hosts")
		os.WriteFile(kh, []byte("[127.0.0.1]:"+s.sd.port+" "+string(pub)), 0o600)
		args := []string{"jump", "--via", "plant-a", s.target(), "--", "-i", s.sd.userKey, "-o", "StrictHostKeyChecking=yes",
			"-o", "UserKnownHostsFile=" + kh, "-o", "BatchMode=yes", "echo", "must-not-run"}
		r := s.run(t, s.tom, args...)
		if r.code != 255 || strings.Contains(r.stdout, "must-not-run") || !strings.Contains(r.stderr, "REMOTE HOST IDENTIFICATION HAS CHANGED") {
			t.Fatalf("a changed host key: exit %d, stdout %q, stderr %q; want ssh's refusal", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		before, _ := s.sshStarts()
		denied := catalog.CodePermissionDenied.Message()
		// A target outside the list: the coordinator refuses, naming the list.
		outside := freeTCPPort(t)
		r := s.run(t, s.tom, "jump", "--via", "plant-a", s.sd.user+"@127.0.0.1:"+outside, "--", "-o", "BatchMode=yes", "true")
		if r.code != exitJumpFailed || !strings.Contains(r.stderr, denied) || !strings.Contains(r.stderr, "127.0.0.1:"+s.sd.port) {
			t.Errorf("outside the list: exit %d, stderr %q; want 255, permission_denied naming the list", r.code, r.stderr)
		}
		// A technician outside the jumpoint's groups.
		r = s.run(t, s.tess, s.jumpVia("yes", "true")...)
		if r.code != exitJumpFailed || !strings.Contains(r.stderr, denied) {
			t.Errorf("tess, in no group of plant-a: exit %d, stderr %q; want 255, permission_denied", r.code, r.stderr)
		}
		// An unknown jumpoint.
		r = s.run(t, s.tom, "jump", "--via", "nowhere", s.target(), "--", "true")
		if r.code != exitJumpFailed || !strings.HasPrefix(r.stderr, "jumpmesh: ") || !strings.Contains(r.stderr, "nowhere") {
			t.Errorf("an unknown jumpoint: exit %d, stderr %q; want 255 naming it", r.code, r.stderr)
		}
		// A listed target where nothing listens: the coordinator grants,
		// the jumpoint cannot connect, and says so before ssh starts.
		r = s.run(t, s.tom, "jump", "--via", "plant-a", "root@127.0.0.1:"+s.closedPort, "--", "true")
		if r.code != exitJumpFailed || !strings.Contains(r.stderr, catalog.CodeJumpointTarget.Message()) {
			t.Errorf("a listed target that does not answer: exit %d, stderr %q; want 255, jumpoint_target_unreachable", r.code, r.stderr)
		}
		// A name is refused before anything is asked.
		r = s.run(t, s.tom, "jump", "--via", "plant-a", "root@localhost")
		if r.code != exitUsage || !strings.Contains(r.stderr, "not a name") {
			t.Errorf("a name: exit %d, stderr %q; want a usage error", r.code, r.stderr)
		}
		if after, argv := s.sshStarts(); after != before {
			t.Errorf("ssh started for a refused jump: %q", argv)
		}
		// The refusals are audited with their code.
		var events []auditEvent
		ok(t, s.admin, &events, "audit", "--kind", "refused", "--json")
		var outsideRefused, tessRefused bool
		for _, e := range events {
			outsideRefused = outsideRefused || e.User == "tom" && e.Target == "127.0.0.1:"+outside && e.Code == string(catalog.CodePermissionDenied)
			tessRefused = tessRefused || e.User == "tess" && e.Code == string(catalog.CodePermissionDenied)
		}
		if !outsideRefused || !tessRefused {
			t.Errorf("refusals audited: outside the list %v, tess %v; events %+v", outsideRefused, tessRefused, events)
		}
	})

	t.Run("jumpoint down", func(t *testing.T) {
		before, _ := s.sshStarts()
		s.jumpoint.Close()
		r := s.run(t, s.tom, s.jumpVia("yes", "true")...)
		if r.code != exitJumpFailed || !strings.Contains(r.stderr, catalog.CodeJumpointUnreachable.Message()) {
			t.Errorf("jumpoint down: exit %d, stderr %q; want 255, jumpoint_unreachable", r.code, r.stderr)
		}
		if after, argv := s.sshStarts(); after != before {
			t.Errorf("ssh started with the jumpoint down: %q", argv)
		}
	})
}

// auditEvent is what these tests read of audit --json.
type auditEvent struct {
	Kind, User, Target, Jumpoint, Code string
	BytesIn                            uint64 `json:"bytes_in"`
	BytesOut                           uint64 `json:"bytes_out"`
}

// TestJumpViaWithoutSSH: no OpenSSH client in PATH is said plainly, before
// the coordinator is asked (this console is not even logged in).
func TestJumpViaWithoutSSH(t *testing.T) {
	cmd := exec.Command(binary, "jump", "--via", "plant-a", "admin@10.20.0.7")
	cmd.Env = append(os.Environ(), "JUMPMESH_HOME="+t.TempDir(), "PATH="+t.TempDir())
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != exitJumpFailed || !strings.Contains(errb.String(), "ssh") ||
		!strings.Contains(errb.String(), "PATH") || strings.Contains(errb.String(), "not logged in") {
		t.Fatalf("without ssh: %v, exit %d, stderr %q", err, code, errb.String())
	}
}

func TestParseViaTarget(t *testing.T) {
	for _, c := range []struct {
		in, user, addr, alias string
	}{
		{"10.20.0.7", "", "10.20.0.7:22", "10.20.0.7"},
		{"admin@10.20.0.7", "admin", "10.20.0.7:22", "10.20.0.7"},
		{"admin@10.20.0.7:2222", "admin", "10.20.0.7:2222", "[10.20.0.7]:2222"},
		{"a@b@10.20.0.7:22", "a@b", "10.20.0.7:22", "10.20.0.7"},
		{"fd00::7", "", "[fd00::7]:22", "fd00::7"},
		{"root@[fd00::7]", "root", "[fd00::7]:22", "fd00::7"},
		{"root@[fd00::7]:2222", "root", "[fd00::7]:2222", "[fd00::7]:2222"},
	} {
		v, err := parseViaTarget(c.in)
		if err != nil || v.user != c.user || v.addr() != c.addr || v.hostKeyAlias() != c.alias {
			t.Errorf("%q: %+v (addr %s, alias %s), %v; want user %q, %s, %s", c.in, v, v.addr(), v.hostKeyAlias(), err, c.user, c.addr, c.alias)
		}
	}
	for _, bad := range []string{"", "@10.0.0.1", "web-01", "admin@plc.lan:22", "10.0.0.1:0", "10.0.0.1:70000", "10.0.0.1:ssh", "[fd00::7", "10.0.0.1:"} {
		if v, err := parseViaTarget(bad); err == nil {
			t.Errorf("%q accepted as %+v", bad, v)
		}
	}
	got := sshArgv(viaTarget{user: "admin", host: netip.MustParseAddr("10.20.0.7"), port: 22}, 40001, "-t", []string{"-i", "k", "uptime"})
	want := "-p 40001 -o HostKeyAlias=10.20.0.7 -l admin -t 127.0.0.1 -i k uptime"
	if strings.Join(got, " ") != want {
		t.Errorf("ssh argv %q, want %q", strings.Join(got, " "), want)
	}
}
