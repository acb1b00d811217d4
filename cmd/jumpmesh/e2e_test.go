package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests run the real binary as a user would: coordinator processes,
// consoles with their own homes, JSON output parsed as a script would.
//
// The slowest of them (a site, a peer and consoles of their own in a temp
// dir, ports chosen free, most of their time spent waiting on processes)
// run in parallel with each other (t.Parallel, after the others, at most
// go test's -parallel at once). A test that sets the environment
// (t.Setenv, inherited by the processes it starts) cannot be parallel.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jumpmesh-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "jumpmesh")
	out, err := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building jumpmesh: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one finished CLI invocation.
type result struct {
	stdout, stderr string
	code           int
}

// jm runs the binary with JUMPMESH_HOME=home and returns what it printed.
func jm(t testing.TB, home string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "JUMPMESH_HOME="+home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running jumpmesh %v: %v", args, err)
	}
	return r
}

// ok runs a command that must succeed and decodes its --json output into v.
func ok(t testing.TB, home string, v any, args ...string) result {
	t.Helper()
	r := jm(t, home, args...)
	if r.code != 0 {
		t.Fatalf("jumpmesh %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
			t.Fatalf("jumpmesh %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, r.stdout)
		}
	}
	return r
}

// failCode runs a command that must fail with --json and the given code.
func failCode(t testing.TB, home, code string, args ...string) {
	t.Helper()
	r := jm(t, home, append(args, "--json")...)
	var je jsonError
	if r.code != exitError || json.Unmarshal([]byte(r.stdout), &je) != nil || je.Error.Code != code {
		t.Fatalf("jumpmesh %s: exit %d, stdout %q, stderr %q; want exit 1 with code %s", strings.Join(args, " "), r.code, r.stdout, r.stderr, code)
	}
	if je.Error.Message == "" {
		t.Fatalf("error without message: %+v", je)
	}
}

// coordinatorProc is a running `jumpmesh coordinator run` process.
type coordinatorProc struct {
	cmd    *exec.Cmd
	addr   string
	http   string
	stderr *bytes.Buffer
	done   chan struct{}
}

func startCoordinator(t testing.TB, data string, listen ...string) *coordinatorProc {
	t.Helper()
	args := []string{"coordinator", "run", "--data", data, "--http-addr", "127.0.0.1:0"}
	for _, l := range listen {
		args = append(args, "--listen", l)
	}
	cmd := exec.Command(binary, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &coordinatorProc{cmd: cmd, stderr: new(bytes.Buffer), done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.kill(syscall.SIGKILL) })
	ready := make(chan error, 2) // "ready", then the exit: neither send may block the reader
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "listening ") && strings.Contains(line, "/tcp/") && p.addr == "":
				p.addr = strings.TrimPrefix(line, "listening ")
			case strings.HasPrefix(line, "http "):
				p.http = strings.TrimSuffix(strings.TrimPrefix(line, "http "), "/metrics")
			case line == "ready":
				ready <- nil
			}
		}
		ready <- fmt.Errorf("coordinator exited before it was ready")
		io.Copy(io.Discard, stdout)
	}()
	go func() { cmd.Wait(); close(p.done) }()
	select {
	case err := <-ready:
		if err != nil {
			<-p.done
			t.Fatalf("%v\n%s", err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("coordinator not ready after 30s\n%s", p.stderr)
	}
	return p
}

// kill sends sig and waits for the process to end.
func (p *coordinatorProc) kill(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

type initOut struct {
	Site, Invite string
	LoginAddrs   []string `json:"login_addrs"`
}

// newSite inits a site in a temp dir and runs its coordinator.
func newSite(t testing.TB, listen ...string) (dir string, init initOut, p *coordinatorProc) {
	t.Helper()
	dir = t.TempDir()
	if len(listen) == 0 {
		listen = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	args := []string{"coordinator", "init", "--data", filepath.Join(dir, "site"), "--json"}
	for _, l := range listen {
		args = append(args, "--listen", l)
	}
	ok(t, dir, &init, args...)
	p = startCoordinator(t, filepath.Join(dir, "site"))
	return dir, init, p
}

func freeTCPPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func jsonInto(s string, v any) error { return json.Unmarshal([]byte(s), v) }
