package console_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// agentSite is a site with one real peer (web-01) online on loopback and
// an agent for the administrator's console home.
type agentSite struct {
	site   *coordinatortest.Site[*console.Client]
	home   string
	agent  *console.Agent
	ran    chan error // Run's result
	peerID string
}

func newAgentSite(t *testing.T, idle time.Duration) *agentSite {
	t.Helper()
	site := coordinatortest.New(t, console.Login)
	resp, err := site.Admin.Call(site.Ctx(), &pb.Request{Body: &pb.Request_InstallerCreate{InstallerCreate: &pb.InstallerCreateRequest{
		Defaults: &pb.InstallerDefaults{Name: "web-01"}, ValidForSeconds: 3600}}})
	if err != nil {
		t.Fatal(err)
	}
	uid := 1000 // the installer's effective user: not root, as a peer install wants
	dir := filepath.Join(t.TempDir(), "jumpmesh")
	if _, err := peer.Install(peer.InstallOptions{Key: resp.GetInstaller().GetKey(), Dir: dir, Binary: os.Args[0], Clock: site.Clock, EUID: &uid}); err != nil {
		t.Fatal(err)
	}
	d, err := peer.Open(peer.RunConfig{Dir: dir, Version: "test", Clock: site.Clock, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; d.Close() })
	coordinatortest.Eventually(t, 20*time.Second, "web-01 online", func() bool {
		v, err := site.Admin.Peer(site.Ctx(), d.ID().String())
		return err == nil && v.GetStatus() == "online"
	})
	s := &agentSite{site: site, home: site.Home("admin"), ran: make(chan error, 1), peerID: d.ID().String()}
	s.agent, err = console.StartAgent(console.AgentConfig{Home: s.home, Idle: idle})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	go func() { s.ran <- s.agent.Run(actx) }()
	t.Cleanup(func() {
		acancel()
		s.agent.Close()
		select {
		case <-s.ran:
		case <-time.After(10 * time.Second):
			t.Error("the agent's Run did not return")
		}
	})
	return s
}

// run jumps through the agent and returns the outputs and the status.
func (s *agentSite) run(t *testing.T, req console.AgentRequest, stdin []byte) (string, string, *pb.ExitStatus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	timing := console.NewTiming(time.Now())
	as, err := console.AgentExec(ctx, s.home, req, timing)
	if err != nil {
		return "", "", nil, err
	}
	defer as.Close()
	var stdout, stderr bytes.Buffer
	st, err := as.Run(ctx, console.ExecIO{Stdin: bytes.NewReader(stdin), Stdout: &stdout, Stderr: &stderr})
	return stdout.String(), stderr.String(), st, err
}

// TestAgentRunsJumps: jumps through the agent carry output, input and
// status, several at once, each with its own grant; a refusal keeps its
// catalog code.
func TestAgentRunsJumps(t *testing.T) {
	s := newAgentSite(t, time.Minute)
	out, errOut, st, err := s.run(t, console.AgentRequest{Ref: "web-01", Argv: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}}, nil)
	if err != nil || out != "out\n" || errOut != "err\n" || st.GetCode() != 3 {
		t.Fatalf("through the agent: %q %q %v %v", out, errOut, st, err)
	}
	in := bytes.Repeat([]byte("0123456789"), 100_000)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, _, st, err := s.run(t, console.AgentRequest{Ref: s.peerID, Argv: []string{"wc", "-c"}}, in)
			if err != nil || strings.TrimSpace(out) != "1000000" || st.GetCode() != 0 {
				t.Errorf("concurrent jump: %q %v %v", out, st, err)
			}
		}()
	}
	wg.Wait()
	_, _, _, err = s.run(t, console.AgentRequest{Ref: "nope", Argv: []string{"true"}}, nil)
	coordinatortest.WantCode(t, err, catalog.CodePeerNotFound)
	events, err := s.site.Admin.Audit(s.site.Ctx(), &pb.AuditRequest{Kind: "grant"})
	if err != nil || len(events) != 4 {
		t.Errorf("%d grant events for 4 granted jumps (%v)", len(events), err)
	}
}

// TestAgentStopsWhenTheHomeChanges: a changed console config (a new login
// would write one) makes the agent refuse with ErrNoAgent and stop.
func TestAgentStopsWhenTheHomeChanges(t *testing.T) {
	s := newAgentSite(t, time.Minute)
	if _, _, st, err := s.run(t, console.AgentRequest{Ref: "web-01", Argv: []string{"true"}}, nil); err != nil || st.GetCode() != 0 {
		t.Fatalf("before: %v %v", st, err)
	}
	cfg := filepath.Join(s.home, console.ConfigFile)
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append(raw, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = s.run(t, console.AgentRequest{Ref: "web-01", Argv: []string{"echo", "no"}}, nil)
	if !errors.Is(err, console.ErrNoAgent) || !errors.Is(err, console.ErrAgentIdentityChanged) {
		t.Fatalf("after the change: %v", err)
	}
	select {
	case err := <-s.ran:
		s.ran <- err // for the cleanup
		if !errors.Is(err, console.ErrAgentIdentityChanged) {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not stop")
	}
	if _, err := os.Stat(s.agent.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after the stop: %v", err)
	}
	if _, _, _, err := s.run(t, console.AgentRequest{Ref: "web-01"}, nil); !errors.Is(err, console.ErrNoAgent) {
		t.Errorf("a jump after the stop: %v", err)
	}
}

// TestAgentStopsWhenIdle: without a jump for its idle time the agent stops.
func TestAgentStopsWhenIdle(t *testing.T) {
	s := newAgentSite(t, time.Second)
	select {
	case err := <-s.ran:
		s.ran <- err
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not stop when idle")
	}
}

// TestAgentPhasesOnTheCommandLinesClock: the agent's phases (jump
// --timing) are filed at the moments they happened on the command line's
// clock, each after the one it follows: the socket, the hello, the
// request, the grant, the channel, the exec, all before the answer came
// back — no gaps hidden by an offset between the two timings.
func TestAgentPhasesOnTheCommandLinesClock(t *testing.T) {
	s := newAgentSite(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	origin := time.Now()
	timing := console.NewTiming(origin)
	as, err := console.AgentExec(ctx, s.home, console.AgentRequest{Ref: "web-01", Argv: []string{"true"}}, timing)
	if err != nil {
		t.Fatal(err)
	}
	st, err := as.Run(ctx, console.ExecIO{})
	as.Close()
	answered := time.Since(origin)
	if err != nil || st.GetCode() != 0 {
		t.Fatalf("jump: %v %v", st, err)
	}
	at := map[string]console.Phase{}
	for _, p := range timing.Phases() {
		at[p.Name] = p
	}
	order := []string{"agent socket", "agent hello (wire version)", "agent: hello, request, home check", "agent: grant request",
		"agent: channel open (grant checked by the peer)", "agent: exec (command run until its exit status)"}
	var prev console.Phase
	for i, name := range order {
		p, ok := at[name]
		if !ok {
			t.Fatalf("no phase %q in %v", name, timing.Phases())
		}
		if p.Start < 0 || p.End < p.Start || p.End > answered {
			t.Errorf("%q from %v to %v, outside the jump (0 to %v)", name, p.Start, p.End, answered)
		}
		// The agent's request phase starts at its accept, before the
		// command line's hello ends; every later phase after the last.
		if i > 0 && name != "agent: hello, request, home check" && p.Start < prev.End {
			t.Errorf("%q starts at %v, before %q ended (%v)", name, p.Start, prev.Name, prev.End)
		}
		if name == "agent: hello, request, home check" && p.Start < at["agent socket"].Start {
			t.Errorf("the agent accepted at %v, before the command line dialled (%v)", p.Start, at["agent socket"].Start)
		}
		prev = p
	}
}

// TestAgentStartsConnected: the agent connects to the coordinator as it
// starts, so its first jump costs what every later one does — no
// coordinator dial among its phases.
func TestAgentStartsConnected(t *testing.T) {
	s := newAgentSite(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	timing := console.NewTiming(time.Now())
	as, err := console.AgentExec(ctx, s.home, console.AgentRequest{Ref: "web-01", Argv: []string{"true"}}, timing)
	if err != nil {
		t.Fatal(err)
	}
	st, err := as.Run(ctx, console.ExecIO{})
	as.Close()
	if err != nil || st.GetCode() != 0 {
		t.Fatalf("jump: %v %v", st, err)
	}
	for _, p := range timing.Phases() {
		if strings.Contains(p.Name, "coordinator dial") {
			t.Errorf("the agent's first jump dialled the coordinator: %v", timing.Phases())
		}
	}
}
