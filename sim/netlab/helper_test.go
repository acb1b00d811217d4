package netlab_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
)

// The test binary doubles as the program the tests run inside namespaces
// and as a lab owner that the tests kill, interrupt or let panic.
const (
	helperEnv     = "JMLAB_TEST_HELPER" // a process mode, handled in TestMain
	helperTestEnv = "JMLAB_TEST_OWNER"  // a lab-owner mode, handled by TestHelperOwner
	helperLife    = 60 * time.Second    // no helper outlives this
)

// runHelper runs one process mode and returns the exit code.
func runHelper(mode string) int {
	switch mode {
	case "netinfo": // print this process's addresses and namespace
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		ns, _ := os.Readlink("/proc/self/ns/net")
		fmt.Println("netns", ns, "host", os.Getenv("JMLAB_HOST"))
		for _, a := range addrs {
			fmt.Println("addr", a)
		}
		return 0
	case "sleep": // wait to be killed
		time.Sleep(helperLife)
		return 0
	case "spawn": // leave a child of our own in the namespace, then wait
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=sleep")
		if err := cmd.Start(); err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("child", cmd.Process.Pid)
		time.Sleep(helperLife)
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}

// helperCmd returns a command running the test binary in a process mode on h.
func helperCmd(ctx context.Context, h *netlab.Host, mode string) *exec.Cmd {
	cmd := h.Command(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	return cmd
}

// syncBuffer collects a child's output from two goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startOwner runs the test binary as a lab owner in mode and returns it
// once it has printed "READY <prefix> [fields...]", with those fields.
func startOwner(t *testing.T, mode string, extraArgs ...string) (*exec.Cmd, []string, *syncBuffer) {
	t.Helper()
	args := append([]string{"-test.run=^TestHelperOwner$", "-test.v"}, extraArgs...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperTestEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			_, _ = log.Write([]byte(line + "\n"))
			if f := strings.Fields(line); !sent && len(f) >= 2 && f[0] == "READY" {
				ready <- f[1:]
				sent = true
			}
		}
		if !sent {
			close(ready)
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case f, ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("lab owner (%s) exited before READY:\n%s", mode, log.String())
		}
		return cmd, f, log
	case <-time.After(30 * time.Second):
		t.Fatalf("lab owner (%s) not READY in 30s:\n%s", mode, log.String())
	}
	return nil, nil, nil
}
