package console_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Frame types of the agent's wire (agentwire.go), as a stranger writes them.
const (
	wireRequest byte = 1
	wireHello   byte = 10
)

func writeWireFrame(w io.Writer, typ byte, payload []byte) error {
	hdr := make([]byte, 5, 5+len(payload))
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	_, err := w.Write(append(hdr, payload...))
	return err
}

func readWireFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	p := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	_, err := io.ReadFull(r, p)
	return hdr[0], p, err
}

// fakeAgent listens on the agent socket of a console home of its own and
// serves each connection with serve; seen gets the type of every frame
// the command line sent.
type fakeAgent struct {
	home string
	mu   sync.Mutex
	seen []byte
}

func newFakeAgent(t *testing.T, serve func(*fakeAgent, net.Conn)) *fakeAgent {
	t.Helper()
	f := &fakeAgent{home: t.TempDir()}
	ln, err := net.Listen("unix", filepath.Join(f.home, console.AgentSocket))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); serve(f, c) }()
		}
	}()
	return f
}

// readAll files the type of every frame the command line sends until it
// closes.
func (f *fakeAgent) readAll(c net.Conn) {
	for {
		typ, _, err := readWireFrame(c)
		if err != nil {
			return
		}
		f.mu.Lock()
		f.seen = append(f.seen, typ)
		f.mu.Unlock()
	}
}

func (f *fakeAgent) sawRequest() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, typ := range f.seen {
		if typ == wireRequest {
			return true
		}
	}
	return false
}

// agentExecWithin runs AgentExec against home and fails the test if it
// has not returned within limit.
func agentExecWithin(t *testing.T, home string, limit time.Duration) (time.Duration, error) {
	t.Helper()
	type result struct {
		s   *console.AgentSession
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		s, err := console.AgentExec(context.Background(), home, console.AgentRequest{Ref: "web-01", Argv: []string{"true"}}, nil)
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		if r.s != nil {
			r.s.Close()
		}
		return time.Since(start), r.err
	case <-time.After(limit):
		t.Fatalf("AgentExec has not returned after %v", limit)
		return 0, nil
	}
}

// TestAgentExecWithoutAnAnswer: an agent socket that takes the connection
// and never answers (a hung agent), one that closes at once and one whose
// agent speaks another wire version: AgentExec gives up within the hello
// wait (2 s) with ErrNoAgent, having sent nothing that could start a
// grant (no request), so jump goes without the agent.
func TestAgentExecWithoutAnAnswer(t *testing.T) {
	const limit = 10 * time.Second // the hello wait (2 s), and room for a loaded machine
	hung := newFakeAgent(t, (*fakeAgent).readAll)
	took, err := agentExecWithin(t, hung.home, limit)
	if !errors.Is(err, console.ErrNoAgent) || !errors.Is(err, console.ErrAgentNoAnswer) {
		t.Errorf("a hung agent: %v", err)
	}
	if took < 2*time.Second-50*time.Millisecond {
		t.Errorf("gave up on the hung agent after %v (the hello wait is 2 s)", took)
	}
	t.Logf("a hung agent: given up after %v", took)
	if hung.sawRequest() {
		t.Error("a request was sent to an agent that never said hello")
	}

	closing := newFakeAgent(t, func(_ *fakeAgent, c net.Conn) { c.Close() })
	if took, err := agentExecWithin(t, closing.home, limit); !errors.Is(err, console.ErrNoAgent) || errors.Is(err, console.ErrAgentNoAnswer) {
		t.Errorf("an agent that closes at once: %v after %v (want no wait for its hello)", err, took)
	}

	for _, version := range []int{console.AgentWireVersion - 1, console.AgentWireVersion + 1} {
		other := newFakeAgent(t, func(f *fakeAgent, c net.Conn) {
			payload, _ := json.Marshal(map[string]any{"version": version})
			if writeWireFrame(c, wireHello, payload) == nil {
				f.readAll(c)
			}
		})
		_, err := agentExecWithin(t, other.home, limit)
		if !errors.Is(err, console.ErrNoAgent) || !errors.Is(err, console.ErrAgentVersion) {
			t.Errorf("an agent of wire version %d: %v", version, err)
		}
		if other.sawRequest() {
			t.Errorf("a request was sent to an agent of wire version %d", version)
		}
	}

	// An agent that goes away after it took the request (it may have asked
	// for a grant): the jump's error, with its catalog code, not a jump
	// again without the agent.
	gone := newFakeAgent(t, func(f *fakeAgent, c net.Conn) {
		if f.helloThenRequest(c) {
			c.Close()
		}
	})
	_, err = agentExecWithin(t, gone.home, limit)
	if errors.Is(err, console.ErrNoAgent) || !gone.sawRequest() {
		t.Errorf("an agent gone after the request: %v (request sent: %v)", err, gone.sawRequest())
	}
	coordinatortest.WantCode(t, err, catalog.CodeConnectionLost)

	// An agent that answers with something else than a hello (a first
	// frame of the first wire, without a version) is not misread.
	old := newFakeAgent(t, func(f *fakeAgent, c net.Conn) {
		if writeWireFrame(c, 9, []byte(`{"has_status":true}`)) == nil {
			f.readAll(c)
		}
	})
	if _, err := agentExecWithin(t, old.home, limit); !errors.Is(err, console.ErrAgentVersion) || old.sawRequest() {
		t.Errorf("an agent without a hello: %v (request sent: %v)", err, old.sawRequest())
	}
}

// TestAgentRefusesAnotherWireVersion: a real agent answers a command line
// of another wire version with its own hello and closes; the request
// that follows asks for no grant. A command line of the first wire (a
// request first, no hello) gets not a byte back.
func TestAgentRefusesAnotherWireVersion(t *testing.T) {
	s := newAgentSite(t, time.Minute)
	dial := func() net.Conn {
		c, err := net.Dial("unix", s.agent.Path())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	}
	req := []byte(`{"ref":"web-01","argv":["true"],"punch_wait":0}`)

	c := dial()
	hello, _ := json.Marshal(map[string]any{"version": console.AgentWireVersion + 1})
	if err := writeWireFrame(c, wireHello, hello); err != nil {
		t.Fatal(err)
	}
	typ, payload, err := readWireFrame(c)
	var h struct{ Version int }
	if err != nil || typ != wireHello || json.Unmarshal(payload, &h) != nil || h.Version != console.AgentWireVersion {
		t.Fatalf("the agent's hello: type %d %q %v", typ, payload, err)
	}
	_ = writeWireFrame(c, wireRequest, req) // may fail: the agent has closed
	if typ, _, err := readWireFrame(c); err == nil {
		t.Errorf("a frame of type %d after a hello of another version", typ)
	}
	c.Close()

	c = dial()
	if err := writeWireFrame(c, wireRequest, req); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("a request without a hello was answered (%d bytes, %v)", n, err)
	}
	c.Close()

	events, err := s.site.Admin.Audit(s.site.Ctx(), &pb.AuditRequest{Kind: "grant"})
	if err != nil || len(events) != 0 {
		t.Errorf("%d grants for requests of another wire (%v)", len(events), err)
	}
	// The agent still serves its own version.
	if _, _, st, err := s.run(t, console.AgentRequest{Ref: "web-01", Argv: []string{"true"}}, nil); err != nil || st.GetCode() != 0 {
		t.Fatalf("a jump of this version after: %v %v", st, err)
	}
}

// Frame types of the agent's answer (agentwire.go).
const (
	wireOpened  byte = 6
	wireWorking byte = 11
)

// helloThenRequest answers the command line's hello and reads up to its
// request; false if the command line went away.
func (f *fakeAgent) helloThenRequest(c net.Conn) bool {
	payload, _ := json.Marshal(map[string]any{"version": console.AgentWireVersion})
	if writeWireFrame(c, wireHello, payload) != nil {
		return false
	}
	for !f.sawRequest() {
		typ, _, err := readWireFrame(c)
		if err != nil {
			return false
		}
		f.mu.Lock()
		f.seen = append(f.seen, typ)
		f.mu.Unlock()
	}
	return true
}

// TestAgentExecGivesUpOnASilentAgent: an agent that took the request and
// then says nothing (stopped with SIGSTOP, stuck) is connection_lost after
// the quiet wait, not a jump that hangs for ever — and not a jump again
// without the agent (it may have asked for a grant).
func TestAgentExecGivesUpOnASilentAgent(t *testing.T) {
	const quiet = 300 * time.Millisecond
	defer console.SetAgentQuietTimeout(quiet)()
	silent := newFakeAgent(t, func(f *fakeAgent, c net.Conn) {
		if f.helloThenRequest(c) {
			f.readAll(c)
		}
	})
	took, err := agentExecWithin(t, silent.home, 10*time.Second)
	coordinatortest.WantCode(t, err, catalog.CodeConnectionLost)
	if errors.Is(err, console.ErrNoAgent) || !silent.sawRequest() {
		t.Errorf("a silent agent: %v (request sent: %v)", err, silent.sawRequest())
	}
	if took < quiet {
		t.Errorf("gave up after %v, before the quiet wait (%v)", took, quiet)
	}
	t.Logf("a silent agent: %v after %v", err, took)
}

// TestAgentExecWaitsForAWorkingAgent: an agent that takes longer than the
// quiet wait to open the session (waking a passive peer, a slow
// coordinator) but beats frameWorking meanwhile is waited for.
func TestAgentExecWaitsForAWorkingAgent(t *testing.T) {
	const quiet = time.Second // 10 beats: room for a loaded machine
	defer console.SetAgentQuietTimeout(quiet)()
	slow := newFakeAgent(t, func(f *fakeAgent, c net.Conn) {
		if !f.helloThenRequest(c) {
			return
		}
		tick := time.NewTicker(quiet / 10)
		defer tick.Stop()
		for range 30 { // 3 × the quiet wait
			<-tick.C
			if writeWireFrame(c, wireWorking, nil) != nil {
				return
			}
		}
		opened, _ := json.Marshal(map[string]any{"path": "direct /ip4/192.0.2.1/tcp/1"})
		if writeWireFrame(c, wireOpened, opened) == nil {
			f.readAll(c)
		}
	})
	took, err := agentExecWithin(t, slow.home, 10*time.Second)
	if err != nil {
		t.Fatalf("a working agent given up on after %v: %v", took, err)
	}
	if took < 3*quiet {
		t.Errorf("opened after %v, before the agent's last beat", took)
	}
}
