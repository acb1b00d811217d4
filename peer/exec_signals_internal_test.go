package peer

import (
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestSessionsGetTheTerminalSignalsThePeerIgnores: a peer started under
// nohup (SIGHUP ignored) or as a shell's background job (SIGINT and
// SIGQUIT ignored) starts its sessions' processes with those signals at
// their default, as on a terminal: the console's hang-up and Ctrl-C reach
// them (without it a hung-up session was killed 2 s later instead).
func TestSessionsGetTheTerminalSignalsThePeerIgnores(t *testing.T) {
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT)
	t.Cleanup(func() { signal.Reset(syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT) })
	p, err := execStart(&pb.ExecOpen{Argv: []string{"grep", "^SigIgn:", "/proc/self/status"}}, ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(p.outs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("grep: %v (%s)", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("the child's status: %q", out)
	}
	ignored, err := strconv.ParseUint(f[1], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT} {
		if ignored&(1<<(uint(sig)-1)) != 0 {
			t.Errorf("the session's process ignores %v (SigIgn %s)", sig, f[1])
		}
	}
	// The peer itself still lets a hang-up pass: it goes to the sink (a
	// default SIGHUP would end this test binary).
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-execSignalSink:
	case <-time.After(10 * time.Second):
		t.Fatal("the peer's hang-up went nowhere")
	}
}
