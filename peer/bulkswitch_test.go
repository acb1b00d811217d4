package peer_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
	"github.com/jumpmesh/jumpmesh/relay"
)

// Relayed sessions through the splice (mesh/channel/bulkswitch.go): a real
// relay with its splice listener on loopback, a real peer daemon reserved
// on it and a console whose session only goes through the relay. The exec
// channel starts on the circuit and moves to a bulk connection through the
// relay's splice while it runs.

// relayedJump jumps to ref with capability through the relay r only.
func relayedJump(t *testing.T, site *coordinatortest.Site[*console.Client], ref string, r *relay.Relay, capability uint32) *console.Jump {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var j *console.Jump
	coordinatortest.Eventually(t, 20*time.Second, "a jump through the relay", func() bool {
		var err error
		if j, err = site.Admin.Jump(ctx, ref, capability); err != nil || len(j.Relays) == 0 {
			return false
		}
		j.ForceRelay = true
		if err := j.Connect(ctx); err != nil {
			t.Logf("relays %v: %v", j.Relays, err)
			site.Admin.Host().Network().ClosePeer(j.ID)
			return false
		}
		return true
	})
	if p := j.Path(); p.Kind != console.PathRelayed || p.Relay != r.ID() {
		t.Fatalf("the session's path is %s, want relayed through %s", p, r.ID())
	}
	return j
}

// relayedSession is a relayed exec channel being run: its input is a
// pipe, its output collected.
type relayedSession struct {
	ch     *channel.Channel
	stdin  *io.PipeWriter
	resize chan *pb.WindowSize
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
	st     *pb.ExitStatus
	err    error
}

func (s *relayedSession) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *relayedSession) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// startRelayedExec opens cmd on j and runs it in the background.
func startRelayedExec(t *testing.T, ctx context.Context, j *console.Jump, cmd console.ExecCommand) *relayedSession {
	t.Helper()
	ch, err := j.Open(ctx, cmd.Need().Open)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Close() })
	in, w := io.Pipe()
	s := &relayedSession{ch: ch, stdin: w, resize: make(chan *pb.WindowSize, 1), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.st, s.err = console.Exec(ctx, ch, console.ExecIO{Stdin: in, Stdout: s, Stderr: s, Resize: s.resize})
		_ = in.Close()
	}()
	return s
}

// wait waits for the session's end and checks its exit code.
func (s *relayedSession) wait(t *testing.T, code int32) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the session did not end")
	}
	if s.err != nil || s.st.GetCode() != code {
		t.Fatalf("exit %v, %v; want code %d (output %q)", s.st, s.err, code, trim(s.output()))
	}
}

func trim(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// waitSwitched waits until the console reads the session from the bulk
// connection (the peer's switch marker came).
func waitSwitched(t *testing.T, s *relayedSession) {
	t.Helper()
	coordinatortest.Eventually(t, 20*time.Second, "the session on the splice", s.ch.BulkSwitched)
}

func relayedPeer(t *testing.T, spliceAddr string) (*coordinatortest.Site[*console.Client], *relay.Relay, *host) {
	site := coordinatortest.New(t, console.Login)
	r := startSpliceRelay(t, site, spliceAddr)
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "behind-nat"})
	waitReservation(t, h, r)
	return site, r, h
}

// TestRelayedExecMovesToTheSplice: a relayed command's output after the
// switch crosses the relay's splice (its counters say so), whole, and its
// exit status comes back through it.
func TestRelayedExecMovesToTheSplice(t *testing.T) {
	site, r, h := relayedPeer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	j := relayedJump(t, site, "behind-nat", r, grant.Exec)
	const n = 4 << 20
	s := startRelayedExec(t, ctx, j, console.ExecCommand{Argv: []string{"sh", "-c", "read x; head -c 4194304 /dev/zero; exit 7"}})
	waitSwitched(t, s)
	before := relayMetric(t, r, "jumpmesh_relay_spliced_bytes_total")
	_, _ = s.stdin.Write([]byte("go\n"))
	s.wait(t, 7)
	if out := s.output(); len(out) != n || strings.Trim(out, "\x00") != "" {
		t.Fatalf("%d bytes of output, want %d zeros", len(out), n)
	}
	if got := relayMetric(t, r, "jumpmesh_relay_splices_total"); got != 1 {
		t.Fatalf("the relay spliced %v connection pairs, want 1", got)
	}
	if got := relayMetric(t, r, "jumpmesh_relay_spliced_bytes_total") - before; got < n {
		t.Fatalf("the relay spliced %v bytes after the switch, want at least the output's %d", got, n)
	}
	if offered, switched := peer.BulkSwitches(h.d); offered != 1 || switched != 1 {
		t.Fatalf("the peer offered %d switches and %d switched, want 1 and 1", offered, switched)
	}
}

// TestRelayedExecInputAroundTheSwitch: input typed before, during and
// after the switch reaches the process once, in order, and its echo comes
// back the same (cat): nothing lost or doubled either way.
func TestRelayedExecInputAroundTheSwitch(t *testing.T) {
	site, r, _ := relayedPeer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	j := relayedJump(t, site, "behind-nat", r, grant.Exec)
	s := startRelayedExec(t, ctx, j, console.ExecCommand{Argv: []string{"cat"}})
	sent := sha256.New()
	chunk := make([]byte, 3000)
	var total int
	after := 0
	deadline := time.Now().Add(30 * time.Second)
	for after < 200 { // chunks until the switch and 200 after it
		_, _ = rand.Read(chunk)
		if _, err := s.stdin.Write(chunk); err != nil {
			t.Fatal(err)
		}
		sent.Write(chunk)
		total += len(chunk)
		if s.ch.BulkSwitched() {
			after++
		} else if time.Now().After(deadline) {
			t.Fatal("the session did not switch")
		}
	}
	_ = s.stdin.Close()
	s.wait(t, 0)
	out := s.output()
	if len(out) != total || sha256.Sum256([]byte(out)) != [32]byte(sent.Sum(nil)) {
		t.Fatalf("%d bytes echoed of %d sent, or not the same", len(out), total)
	}
}

// TestRelayedShellWindowChangeAroundTheSwitch: a PTY session whose input
// is typed half before and half after the switch and whose window changes
// after it. (The console sends input and window changes from two
// goroutines, so the shell waits for the line before the change is made.)
func TestRelayedShellWindowChangeAroundTheSwitch(t *testing.T) {
	site, r, _ := relayedPeer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	j := relayedJump(t, site, "behind-nat", r, grant.Shell)
	s := startRelayedExec(t, ctx, j, console.ExecCommand{TTY: true, Term: "xterm", Window: &pb.WindowSize{Rows: 24, Cols: 80},
		Argv: []string{"sh", "-c", `trap 'stty size; exit 3' WINCH; read a; echo "got $a"; while :; do sleep 0.05; done`}})
	_, _ = s.stdin.Write([]byte("hel"))
	waitSwitched(t, s)
	_, _ = s.stdin.Write([]byte("lo\n"))
	coordinatortest.Eventually(t, 20*time.Second, "the line read", func() bool { return strings.Contains(s.output(), "got hello") })
	s.resize <- &pb.WindowSize{Rows: 40, Cols: 120}
	s.wait(t, 3)
	if out := s.output(); !strings.Contains(out, "40 120") || !strings.Contains(out, "got hello") {
		t.Fatalf("output %q: want the new window size and the line typed", out)
	}
}

// TestRelayedExecStaysOnTheCircuit: without the relay's splice (an older
// relay) no switch is offered and the session runs on the circuit.
func TestRelayedExecStaysOnTheCircuit(t *testing.T) {
	site, r, h := relayedPeer(t, "off")
	out, st := relayedCat(t, site, r)
	if st.GetCode() != 0 || out != "over the circuit\n" {
		t.Fatalf("exit %v, output %q", st, out)
	}
	if offered, switched := peer.BulkSwitches(h.d); offered != 0 || switched != 0 {
		t.Fatalf("the peer offered %d switches and %d switched, want none", offered, switched)
	}
}

// relayedCat runs `cat` on a relayed jump with one line of input.
func relayedCat(t *testing.T, site *coordinatortest.Site[*console.Client], r *relay.Relay) (string, *pb.ExitStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j := relayedJump(t, site, "behind-nat", r, grant.Exec)
	ch, err := j.Open(ctx, console.ExecCommand{Argv: []string{"cat"}}.Need().Open)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	var out bytes.Buffer
	st, err := console.Exec(ctx, ch, console.ExecIO{Stdin: strings.NewReader("over the circuit\n"), Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	if ch.BulkSwitched() {
		t.Fatal("the session switched")
	}
	return out.String(), st
}

// TestRelayedExecOldPeer: a peer of session protocol 1.1.0 is asked
// nothing; the session runs on the circuit.
func TestRelayedExecOldPeer(t *testing.T) {
	site, r, h := relayedPeer(t, "")
	peer.DropBulkSwitch(h.d)
	out, st := relayedCat(t, site, r)
	if st.GetCode() != 0 || out != "over the circuit\n" {
		t.Fatalf("exit %v, output %q", st, out)
	}
	if offered, _ := peer.BulkSwitches(h.d); offered != 0 {
		t.Fatalf("the peer offered %d switches, want none", offered)
	}
}

// TestRelayedExecStrangerRacesTheSlot: whoever sees the slot on the wire
// and reaches the splice before the console is paired with the peer but
// cannot make the bulk hello; the console's own dial then finds no slot,
// declines, and the session stays on the circuit.
func TestRelayedExecStrangerRacesTheSlot(t *testing.T) {
	site, r, h := relayedPeer(t, "")
	raced := make(chan error, 1)
	// The peer sends its offer only once the relay has paired the
	// stranger with it: the relay reads the two sides' tokens apart, so
	// the console's dial, made on the offer, could otherwise be read
	// first on a busy machine and the test would show nothing.
	paired := make(chan struct{})
	peer.SetSpliceSlotHook(h.d, func(addr string, slot channel.SpliceSlot) {
		c, err := channel.DialSplice(context.Background(), addr, slot.Token, channel.SpliceDialer, 5*time.Second)
		if err == nil {
			junk := make([]byte, 200) // a ticket and a "hello" it cannot seal
			_, _ = rand.Read(junk)
			_, err = c.Write(junk)
			go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
		}
		raced <- err
		select {
		case <-paired:
		case <-time.After(20 * time.Second):
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j := relayedJump(t, site, "behind-nat", r, grant.Exec)
	s := startRelayedExec(t, ctx, j, console.ExecCommand{Argv: []string{"cat"}})
	_, _ = s.stdin.Write([]byte("before\n"))
	if err := <-raced; err != nil {
		t.Fatalf("the stranger's dial: %v", err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "the stranger paired with the peer", func() bool {
		return relayMetric(t, r, "jumpmesh_relay_splices_total") >= 1
	})
	close(paired)
	coordinatortest.Eventually(t, 20*time.Second, "the peer's offer", func() bool { offered, _ := peer.BulkSwitches(h.d); return offered == 1 })
	_, _ = s.stdin.Write([]byte("after\n"))
	_ = s.stdin.Close()
	s.wait(t, 0)
	if out := s.output(); out != "before\nafter\n" || s.ch.BulkSwitched() {
		t.Fatalf("output %q, switched %v", out, s.ch.BulkSwitched())
	}
	if _, switched := peer.BulkSwitches(h.d); switched != 0 {
		t.Fatalf("the peer switched %d sessions", switched)
	}
}

// TestDirectExecAskingForASwitch: a console that asks for the switch on a
// direct connection (no relay hop) gets no offer: the peer sends the
// session's messages only.
func TestDirectExecAskingForASwitch(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "web-01"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := site.Admin.Jump(ctx, "web-01", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := site.Admin.Host().NewStream(ctx, j.ID, channel.ProtocolBulkSwitch)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Reset()
	_ = st.SetDeadline(time.Now().Add(20 * time.Second))
	open := &pb.ChannelOpen{Grant: j.Grant, BulkSwitch: true, Kind: &pb.ChannelOpen_Exec{Exec: &pb.ExecOpen{Argv: []string{"sh", "-c", "sleep 0.5; echo hi"}}}}
	if _, err := protodelim.MarshalTo(st, open); err != nil {
		t.Fatal(err)
	}
	if _, err := protodelim.MarshalTo(st, &pb.ExecMsg{Body: &pb.ExecMsg_StdinEof{StdinEof: true}}); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(st)
	var ready pb.ChannelReady
	if err := protodelim.UnmarshalFrom(rd, &ready); err != nil || ready.GetError() != nil {
		t.Fatalf("ready %v, %v", &ready, err)
	}
	var out bytes.Buffer
	for {
		var m pb.ExecMsg
		if err := protodelim.UnmarshalFrom(rd, &m); err != nil {
			t.Fatalf("reading the session: %v", err)
		}
		if m.GetBody() == nil {
			t.Fatal("the peer sent an empty frame (a bulk switch message) on a direct connection")
		}
		out.Write(m.GetStdout())
		if m.GetExit() != nil {
			break
		}
	}
	if out.String() != "hi\n" {
		t.Fatalf("output %q", out.String())
	}
	if offered, _ := peer.BulkSwitches(h.d); offered != 0 {
		t.Fatalf("the peer offered %d switches on a direct connection", offered)
	}
}

// TestRelayedCopyMovesToTheSplice: a relayed push's file data, after the
// switch, crosses the relay's splice and arrives whole. The console's
// sender waits, after its first chunk, until the channel switched (its
// reader and the splice's dial go on meanwhile), so that most of the file
// goes after the switch.
func TestRelayedCopyMovesToTheSplice(t *testing.T) {
	site, r, h := relayedPeer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const n = 32 << 20
	src := filepath.Join(t.TempDir(), "big")
	data := make([]byte, n)
	_, _ = rand.Read(data)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	j := relayedJump(t, site, "behind-nat", r, grant.FileTransfer)
	ch, err := j.Open(ctx, &pb.ChannelOpen{Kind: &pb.ChannelOpen_File{File: &pb.FileOpen{Push: true, Path: dst}}})
	if err != nil {
		t.Fatal(err)
	}
	var sentBefore int64 = -1
	progress := func(done, total int64) {
		if sentBefore < 0 {
			sentBefore = done
			coordinatortest.Eventually(t, 20*time.Second, "the copy on the splice", ch.BulkSwitched)
		}
	}
	if err := console.Push(ctx, ch, src, progress); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("the copy: %d bytes of %d, %v", len(got), n, err)
	}
	if got := relayMetric(t, r, "jumpmesh_relay_spliced_bytes_total"); got < float64(n-sentBefore) {
		t.Fatalf("the relay spliced %v bytes, want at least the %d sent after the switch", got, n-sentBefore)
	}
	if offered, switched := peer.BulkSwitches(h.d); offered != 1 || switched != 1 {
		t.Fatalf("the peer offered %d switches and %d switched, want 1 and 1", offered, switched)
	}
}
