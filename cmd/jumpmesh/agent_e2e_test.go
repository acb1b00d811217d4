package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/jumpmesh/jumpmesh/console"
)

// agentProc is a running `jumpmesh agent`.
type agentProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// startAgent runs jumpmesh agent for home until the test ends, and waits
// for it to listen.
func startAgent(t testing.TB, home string, args ...string) *agentProc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"agent"}, args...)...)
	cmd.Env = append(os.Environ(), "JUMPMESH_HOME="+home)
	a := &agentProc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = a.out, a.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-a.done
		}
	})
	waitFor(t, 20*time.Second, "the agent listening", func() bool { return strings.Contains(a.out.String(), "jumpmesh: agent on ") })
	return a
}

func (a *agentProc) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// grants counts the coordinator's grant events in the audit log.
func grants(t *testing.T, admin string) int {
	t.Helper()
	var audit []struct{ Kind string }
	ok(t, admin, &audit, "audit", "--json", "--kind", "grant")
	return len(audit)
}

// TestJumpThroughTheAgent: with an agent running, jump goes through it
// (the same output, status and stdin as without), each jump still asks
// the coordinator for its own audited grant, --no-agent bypasses it, and
// the socket is its owner's only.
func TestJumpThroughTheAgent(t *testing.T) {
	s := newJumpSite(t)
	startAgent(t, s.admin, "--idle", "1m")
	sock := filepath.Join(s.admin, "agent.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("agent socket: %v %v", fi.Mode(), err)
	}
	before := grants(t, s.admin)
	r := jm(t, s.admin, "jump", "web-01", "-v", "--timing", "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 7")
	if r.code != 7 || r.stdout != "to-out\n" || !strings.Contains(r.stderr, "to-err\n") || !strings.Contains(r.stderr, "through the agent") {
		t.Fatalf("jump through the agent: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	phases := parseTiming(r.stderr)
	for _, want := range []string{"agent socket", "agent: grant request", "agent: channel open (grant checked by the peer)"} {
		if _, ok := phases[want]; !ok {
			t.Errorf("no phase %q in\n%s", want, r.stderr)
		}
	}
	if _, ok := phases["host start (libp2p, listeners)"]; ok {
		t.Errorf("a jump through the agent started a host of its own:\n%s", r.stderr)
	}
	// stdin is streamed through the agent.
	cmd := exec.Command(binary, "jump", "web-01", "--", "wc", "-c")
	cmd.Env = append(os.Environ(), "JUMPMESH_HOME="+s.admin)
	cmd.Stdin = bytes.NewReader(bytes.Repeat([]byte("x"), 1<<20))
	if out, err := cmd.Output(); err != nil || strings.TrimSpace(string(out)) != "1048576" {
		t.Fatalf("stdin through the agent: %q %v", out, err)
	}
	// A refusal keeps its catalog code and jump's exit status.
	if r := jm(t, s.admin, "jump", "nope", "--", "true"); r.code != exitJumpFailed || !strings.Contains(r.stderr, "The peer does not exist") {
		t.Fatalf("jump to nothing through the agent: %d %q", r.code, r.stderr)
	}
	if r := jm(t, s.admin, "jump", "web-01", "-v", "--no-agent", "--", "true"); r.code != 0 || strings.Contains(r.stderr, "through the agent") {
		t.Fatalf("jump --no-agent: %d %q", r.code, r.stderr)
	}
	// One grant per jump, through the agent or not.
	if got := grants(t, s.admin) - before; got != 3 {
		t.Errorf("%d grants for 3 granted jumps", got)
	}
}

// TestAgentRefusesAnotherUser: a process of another local user that
// reaches the socket (its modes loosened on purpose here) gets not a
// byte back, and no jump is asked for.
func TestAgentRefusesAnotherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	const python = "/usr/bin/python3" // the system's: a user's own (pyenv) is not the stranger's to run
	if _, err := os.Stat(python); err != nil {
		t.Skip("no /usr/bin/python3 for the stranger's client")
	}
	s := newJumpSite(t)
	startAgent(t, s.admin)
	sock := filepath.Join(s.admin, "agent.sock")
	for p := s.admin; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		os.Chmod(p, 0o755) // the test's directories, up to the system's temporary one
	}
	os.Chmod(sock, 0o666)
	before := grants(t, s.admin)
	// A well-formed hello (type 10, this wire's version), then a request
	// frame: type 1, length, JSON.
	stranger := exec.Command(python, "-c", `
import socket, struct, sys
hello = b'{"version":%d}' % int(sys.argv[2])
req = b'{"ref":"web-01","argv":["id"]}'
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
try:
    s.sendall(bytes([10]) + struct.pack(">I", len(hello)) + hello + bytes([1]) + struct.pack(">I", len(req)) + req)
    s.settimeout(20)
    got = s.recv(1 << 16)
except (BrokenPipeError, ConnectionResetError):  # closed at once, the request unread
    got = b""
sys.stdout.write("answer:%d" % len(got))
`, sock, strconv.Itoa(console.AgentWireVersion))
	stranger.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := stranger.CombinedOutput()
	if err != nil || string(out) != "answer:0" {
		t.Fatalf("another user's request: %v %q (want the connection closed without an answer)", err, out)
	}
	if got := grants(t, s.admin) - before; got != 0 {
		t.Errorf("another user's request asked for %d grants", got)
	}
	if r := jm(t, s.admin, "jump", "web-01", "-v", "--", "true"); r.code != 0 || !strings.Contains(r.stderr, "through the agent") {
		t.Fatalf("the owner after the stranger: %d %q", r.code, r.stderr)
	}
}

// TestAgentOfARemovedTechnicianCannotJump: the agent keeps connections,
// not authority: once the technician is removed its agent's next jump is
// refused by the coordinator, as its console's would be.
func TestAgentOfARemovedTechnicianCannotJump(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (e2e_test.go)
	s := newJumpSite(t)
	var inv struct{ Code string }
	ok(t, s.admin, &inv, "user", "invite", "mallory", "--role", "admin", "--json")
	home := filepath.Join(s.dir, "mallory")
	ok(t, home, nil, "login", s.coord.addr, inv.Code)
	startAgent(t, home)
	if r := jm(t, home, "jump", "web-01", "-v", "--", "true"); r.code != 0 || !strings.Contains(r.stderr, "through the agent") {
		t.Fatalf("before the removal: %d %q", r.code, r.stderr)
	}
	ok(t, s.admin, nil, "user", "remove", "mallory")
	r := jm(t, home, "jump", "web-01", "-v", "--", "echo", "still-here")
	if r.code != exitJumpFailed || strings.Contains(r.stdout, "still-here") || !strings.Contains(r.stderr, "does not know this console's key") {
		t.Fatalf("a removed technician's agent jumped: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestAgentStopsWhenTheKeyChanges: an agent started with one key does not
// jump for a home that now holds another (a new login): it stops, and
// jump goes on its own with the home's key.
func TestAgentStopsWhenTheKeyChanges(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (e2e_test.go)
	s := newJumpSite(t)
	a := startAgent(t, s.admin)
	if r := jm(t, s.admin, "jump", "web-01", "-v", "--", "true"); r.code != 0 || !strings.Contains(r.stderr, "through the agent") {
		t.Fatalf("before the new key: %d %q", r.code, r.stderr)
	}
	var inv struct{ Code string }
	ok(t, s.admin, &inv, "user", "invite", "admin2", "--role", "admin", "--json")
	if err := os.Remove(filepath.Join(s.admin, "technician.key")); err != nil {
		t.Fatal(err)
	}
	ok(t, s.admin, nil, "login", s.coord.addr, inv.Code)
	r := jm(t, s.admin, "jump", "web-01", "-v", "--", "true")
	if r.code != 0 || strings.Contains(r.stderr, ", through the agent") || !strings.Contains(r.stderr, "key or site changed") {
		t.Fatalf("after the new key: exit %d, stderr %q (want a jump without the agent)", r.code, r.stderr)
	}
	waitFor(t, 10*time.Second, "the agent stopped", a.exited)
	if !strings.Contains(a.out.String(), "key or site changed") {
		t.Errorf("the agent's output: %q", a.out.String())
	}
	if _, err := os.Stat(filepath.Join(s.admin, "agent.sock")); !os.IsNotExist(err) {
		t.Errorf("the stopped agent left its socket: %v", err)
	}
}

// TestJumpShellThroughTheAgent: a shell in a PTY through the agent, as
// without it: the window size at the start and its changes reach the
// remote, the exit status comes back; SIGTERM to jump ends the session
// (143), as without the agent.
func TestJumpShellThroughTheAgent(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (e2e_test.go)
	s := newJumpSite(t)
	startAgent(t, s.admin)
	shell := func() (*exec.Cmd, *os.File, *syncBuffer) {
		cmd := exec.Command(binary, "jump", "web-01", "-v")
		cmd.Env = append(os.Environ(), "JUMPMESH_HOME="+s.admin, "TERM=xterm")
		tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tty.Close() })
		screen := &syncBuffer{}
		go io.Copy(screen, tty)
		return cmd, tty, screen
	}
	wait := func(cmd *exec.Cmd, screen *syncBuffer, want int) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != want {
				t.Fatalf("shell exit: %v, want %d\n%q", err, want, screen.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("the shell did not end\n%q", screen.String())
		}
	}
	cmd, tty, screen := shell()
	fmt.Fprintf(tty, "echo $((6*7)); stty size\r")
	waitFor(t, 20*time.Second, "the remote shell's answer", func() bool {
		return strings.Contains(screen.String(), "42") && strings.Contains(screen.String(), "30 100") &&
			strings.Contains(screen.String(), "through the agent")
	})
	if err := pty.Setsize(tty, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	polls := 0
	waitFor(t, 20*time.Second, "the resize to reach the remote", func() bool {
		if polls%10 == 0 {
			fmt.Fprintf(tty, "stty size\r")
		}
		polls++
		return strings.Contains(screen.String(), "40 120")
	})
	fmt.Fprintf(tty, "exit 5\r")
	wait(cmd, screen, 5)

	cmd, tty, screen = shell()
	fmt.Fprintf(tty, "echo $((6*8))\r")
	waitFor(t, 20*time.Second, "the second shell", func() bool { return strings.Contains(screen.String(), "48") })
	cmd.Process.Signal(syscall.SIGTERM)
	wait(cmd, screen, 143)
}

// TestJumpWithoutAnAnsweringAgent: an agent.sock that takes connections
// and never answers (a hung agent), one that closes them at once, and an
// agent of another wire version: jump goes without the agent (-v says
// why), within the hello wait (2 s) of a jump without any agent.
func TestJumpWithoutAnAnsweringAgent(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (e2e_test.go)
	s := newJumpSite(t)
	sock := filepath.Join(s.admin, "agent.sock")
	jumpOn := func(what string, serve func(net.Conn), want string) {
		t.Helper()
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				go serve(c)
			}
		}()
		defer func() {
			ln.Close()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
			os.Remove(sock)
		}()
		start := time.Now()
		r := jm(t, s.admin, "jump", "web-01", "-v", "--", "echo", "hi") // jm gives up after 60 s
		took := time.Since(start)
		if r.code != 0 || r.stdout != "hi\n" || strings.Contains(r.stderr, ", through the agent") || !strings.Contains(r.stderr, want) {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q (want a jump without the agent, saying %q)", what, r.code, r.stdout, r.stderr, want)
		}
		t.Logf("%s: jump took %v", what, took)
	}
	hung := func(c net.Conn) { io.Copy(io.Discard, c) }
	jumpOn("a hung agent", hung, "the agent did not answer within 2s; jumping without it")
	jumpOn("an agent that closes at once", func(c net.Conn) { c.Close() }, "closed without a hello")
	other := func(c net.Conn) {
		hello := fmt.Sprintf(`{"version":%d}`, console.AgentWireVersion+1)
		c.Write(append([]byte{10, 0, 0, 0, byte(len(hello))}, hello...))
		io.Copy(io.Discard, c)
	}
	jumpOn("an agent of another version", other, "of another jumpmesh version")
	// The plain case: no socket, no word about the agent.
	if r := jm(t, s.admin, "jump", "web-01", "-v", "--", "true"); r.code != 0 || strings.Contains(r.stderr, "agent") {
		t.Fatalf("without an agent: %d %q", r.code, r.stderr)
	}
}
