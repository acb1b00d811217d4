package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// jumpSite is a site with one peer, web-01, running from the real binary.
type jumpSite struct {
	dir, admin, hostDir string
	coord               *coordinatorProc
}

func newJumpSite(t testing.TB) *jumpSite { return newJumpSiteTB(t) }

func newJumpSiteTB(t testing.TB) *jumpSite {
	t.Helper()
	dir, init, coord := newSite(t)
	s := &jumpSite{dir: dir, admin: filepath.Join(dir, "admin"), hostDir: filepath.Join(dir, "host", "jumpmesh"), coord: coord}
	ok(t, s.admin, nil, "login", coord.addr, init.Invite)
	var in struct{ Key string }
	ok(t, s.admin, &in, "installer", "create", "--name", "web-01", "--valid-for", "1h", "--json")
	me, _ := user.Current()
	os.MkdirAll(filepath.Dir(s.hostDir), 0o755)
	ok(t, dir, nil, "peer", "install", "--key", in.Key, "--install-dir", s.hostDir, "--user", me.Username)
	if code, out := initScript(t, s.hostDir, "start"); code != 0 {
		t.Fatalf("start: %d %s", code, out)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(s.hostDir, "init-script")); err == nil {
			initScript(t, s.hostDir, "stop")
		}
	})
	waitFor(t, 30*time.Second, "web-01 online", func() bool {
		r := jm(t, s.admin, "ls", "name:web-01", "status:online", "--json")
		return r.code == 0 && strings.Contains(r.stdout, `"online"`)
	})
	return s
}

func TestJumpExecThroughTheCLI(t *testing.T) {
	s := newJumpSite(t)
	if r := jm(t, s.admin, "ls", "--limit", "0"); r.code != 2 || !strings.Contains(r.stderr, "--limit is 1 to") {
		t.Fatalf("ls --limit 0: exit %d, %q", r.code, r.stderr)
	}
	// The table (its own view of the records) shows the peer's row.
	if r := jm(t, s.admin, "ls", "--limit", "1"); r.code != 0 || strings.Contains(r.stderr, "showing the first") ||
		!regexp.MustCompile(`(?m)^web-01 +online +\S+ +\S+ +\d+\.\d+\.\d+\.\d+ .* now +12D3Koo`).MatchString(r.stdout) {
		t.Fatalf("ls --limit 1 of one peer: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	r := jm(t, s.admin, "jump", "web-01", "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 7")
	if r.code != 7 || r.stdout != "to-out\n" || r.stderr != "to-err\n" {
		t.Fatalf("jump exec: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// stdin is streamed to the command.
	cmd := exec.Command(binary, "jump", "web-01", "--", "wc", "-c")
	cmd.Env = append(os.Environ(), "JUMPMESH_HOME="+s.admin)
	cmd.Stdin = bytes.NewReader(bytes.Repeat([]byte("x"), 1<<20))
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "1048576" {
		t.Fatalf("stdin: %q %v", out, err)
	}
	// -v tells the path.
	r = jm(t, s.admin, "jump", "web-01", "-v", "--", "true")
	if r.code != 0 || !strings.Contains(r.stderr, "direct /ip") {
		t.Fatalf("jump -v: %d %q", r.code, r.stderr)
	}
	// Each jump reported its path: all direct here.
	var paths struct {
		Direct     uint64  `json:"direct"`
		DirectRate float64 `json:"direct_rate"`
	}
	ok(t, s.admin, &paths, "stats", "paths", "--json")
	if paths.Direct < 3 || paths.DirectRate != 1 {
		t.Fatalf("stats paths: %+v", paths)
	}
	// ping measures round trips and names the path.
	var pr pingResult
	ok(t, s.admin, &pr, "ping", "web-01", "-c", "2", "-i", "50ms", "--json")
	if len(pr.Rounds) != 2 || pr.Rounds[0].RTT <= 0 || !strings.HasPrefix(pr.Rounds[0].Path, "direct /ip") ||
		pr.Initial != "direct" || pr.Final != "direct" || pr.Transport == "" || pr.ConnectMS <= 0 || pr.RTTMS <= 0 {
		t.Fatalf("ping: %+v", pr)
	}
	// A refused jump carries its catalog code.
	r = jm(t, s.admin, "jump", "nope", "--", "true")
	if r.code != exitJumpFailed || !strings.Contains(r.stderr, "The peer does not exist") {
		t.Fatalf("jump to nothing: %d %q", r.code, r.stderr)
	}
	var audit []struct{ Kind, Code string }
	ok(t, s.admin, &audit, "audit", "--json")
	kinds := map[string]int{}
	for _, e := range audit {
		kinds[e.Kind]++
	}
	if kinds["grant"] < 3 || kinds["refused"] < 1 || kinds["start"] < 3 || kinds["end"] < 3 {
		t.Fatalf("audit: %v", kinds)
	}
}

func TestJumpShellInAPTY(t *testing.T) {
	s := newJumpSite(t)
	cmd := exec.Command(binary, "jump", "web-01")
	cmd.Env = append(os.Environ(), "JUMPMESH_HOME="+s.admin, "TERM=xterm")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var screen syncBuffer
	go io.Copy(&screen, tty)
	fmt.Fprintf(tty, "echo $((6*7)); stty size\r")
	defer func() {
		if t.Failed() {
			t.Logf("screen:\n%q", screen.String())
		}
	}()
	waitFor(t, 20*time.Second, "the remote shell's answer", func() bool {
		return strings.Contains(screen.String(), "42") && strings.Contains(screen.String(), "30 100")
	})
	// The window follows ours.
	if err := pty.Setsize(tty, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	polls := 0
	waitFor(t, 20*time.Second, "the resize to reach the remote", func() bool {
		if polls%10 == 0 { // ask again now and then: the resize travels on its own
			fmt.Fprintf(tty, "stty size\r")
		}
		polls++
		return strings.Contains(screen.String(), "40 120")
	})
	fmt.Fprintf(tty, "exit 5\r")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
			t.Fatalf("shell exit: %v\n%s", err, screen.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the shell did not end\n%s", screen.String())
	}
}

func TestForwardAndCopyThroughTheCLI(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (e2e_test.go)
	s := newJumpSite(t)
	// A real HTTP server on the peer's side.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "hello %s", r.URL.Path) })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	lport := freeTCPPort(t)
	fw := exec.Command(binary, "forward", "web-01", lport+":127.0.0.1:"+strings.Split(ln.Addr().String(), ":")[1])
	fw.Env = append(os.Environ(), "JUMPMESH_HOME="+s.admin)
	var fwOut syncBuffer
	fw.Stdout, fw.Stderr = &fwOut, &fwOut
	if err := fw.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { fw.Process.Signal(os.Interrupt); fw.Wait() }()
	waitFor(t, 20*time.Second, "the forward listening", func() bool { return strings.Contains(fwOut.String(), "forwarding") })
	for i := 0; i < 5; i++ {
		resp, err := http.Get("http://127.0.0.1:" + lport + fmt.Sprintf("/req%d", i))
		if err != nil {
			t.Fatalf("through the forward: %v\n%s", err, fwOut.String())
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != fmt.Sprintf("hello /req%d", i) {
			t.Fatalf("body %q", body)
		}
	}

	// cp both ways with a large file, integrity checked by content.
	big := filepath.Join(s.dir, "big.bin")
	data := make([]byte, 32<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	os.WriteFile(big, data, 0o640)
	remote := filepath.Join(s.dir, "remote-copy.bin")
	ok(t, s.admin, nil, "cp", big, "web-01:"+remote)
	back := filepath.Join(s.dir, "back.bin")
	ok(t, s.admin, nil, "cp", "web-01:"+remote, back)
	got, err := os.ReadFile(back)
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("round trip through cp changed the file: %v", err)
	}
	if st, _ := os.Stat(back); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", st.Mode().Perm())
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }
