package peer_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
)

// TestAgentJumpSaysItMovedToTheSplice: jump -v through the agent prints
// the line a jump on its own prints when its relayed session moves to the
// relay's splice (issue 17), on the command line's stderr; without -v,
// nothing. A real relay with its splice, a real peer daemon reserved on
// it, an agent that reaches peers only through relays.
func TestAgentJumpSaysItMovedToTheSplice(t *testing.T) {
	site, r, _ := relayedPeer(t, "")
	home := site.Home("admin")
	// The peer is reachable through the relay before the agent jumps.
	relayedJump(t, site, "behind-nat", r, grant.Exec).Close()
	agent, err := console.StartAgent(console.AgentConfig{Home: home, Idle: time.Minute, ForceRelay: true})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- agent.Run(actx) }()
	t.Cleanup(func() { acancel(); agent.Close(); <-ran })

	want := "jumpmesh: " + channel.NoteBulkSwitched + "\n"
	for _, verbose := range []bool{true, false} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		as, err := console.AgentExec(ctx, home, console.AgentRequest{Ref: "behind-nat", Argv: []string{"cat"}, Verbose: verbose}, nil)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if !strings.Contains(as.PathLine, "via relayed") {
			t.Fatalf("the agent's path: %q, want relayed", as.PathLine)
		}
		in, stdin := io.Pipe()
		var stdout, stderr syncBuffer
		done := make(chan error, 1)
		go func() {
			_, err := as.Run(ctx, console.ExecIO{Stdin: in, Stdout: &stdout, Stderr: &stderr})
			done <- err
		}()
		if verbose {
			coordinatortest.Eventually(t, 20*time.Second, "the note on stderr", func() bool { return stderr.String() == want })
		} else {
			// The same session moves without -v (the relay's second
			// splice), and says nothing.
			coordinatortest.Eventually(t, 20*time.Second, "the second session on the splice", func() bool {
				return relayMetric(t, r, "jumpmesh_relay_splices_total") == 2
			})
			_, _ = stdin.Write([]byte("ping\n"))
			coordinatortest.Eventually(t, 20*time.Second, "the echo", func() bool { return stdout.String() == "ping\n" })
		}
		_ = stdin.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		as.Close()
		cancel()
		if !verbose && stderr.String() != "" {
			t.Fatalf("without -v, stderr %q", stderr.String())
		}
	}
}
