package netlab_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/netlab/labtest"
)

// everything is a topology with every preset, wires, loss and rate, so a
// teardown test meets every kind of object.
func everything() netlab.Topology {
	topo := netlab.Topology{Networks: []netlab.NetworkSpec{{Name: "pub", NAT: netlab.Public}}}
	for _, p := range netlab.Presets()[1:] {
		topo.Networks = append(topo.Networks, netlab.NetworkSpec{
			Name: string(p), NAT: p,
			Uplink: netlab.Link{Latency: time.Millisecond, Loss: 1, Rate: 100_000_000},
		})
		topo.Hosts = append(topo.Hosts, netlab.HostSpec{
			Name: "h-" + string(p), Network: string(p),
			Link: netlab.Link{Latency: time.Millisecond, Jitter: time.Millisecond},
		})
	}
	topo.Hosts = append(topo.Hosts, netlab.HostSpec{Name: "srv", Network: "pub", Link: netlab.Link{Loss: 5, Rate: 10_000_000}})
	return topo
}

// netnsFDs lists the network namespaces this process holds open file
// descriptors to, other than its own.
func netnsFDs(t *testing.T) []string {
	t.Helper()
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(target, "net:") && target != self {
			out = append(out, target)
		}
	}
	return out
}

func rootLinkNames(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

func exited(t *testing.T, pidfd int) bool {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestCloseLeavesNothing builds every kind of object, with a process and a
// grandchild that outlives it inside the lab, and checks that Close removes
// all of it: no namespace, link, nft table, owner file or process with the
// prefix, no namespace file descriptor and no goroutine left in this process,
// and nothing changed in the root namespace at any time.
func TestCloseLeavesNothing(t *testing.T) {
	labtest.Skip(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fdsBefore := netnsFDs(t)
	linksBefore := rootLinkNames(t)

	lab, err := netlab.New(context.Background(), everything(), netlab.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Close() }) // in case of an early Fatal
	prefix := lab.Prefix()
	if !strings.HasPrefix(prefix, netlab.PrefixBase) {
		t.Fatalf("prefix %q", prefix)
	}

	h := lab.Host("h-easy")
	cmd := helperCmd(context.Background(), h, "spawn")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	proc, err := h.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var child int
	if _, err := fmt.Sscanf(line, "child %d", &child); err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	childFD, err := unix.PidfdOpen(child, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(childFD)

	left, err := netlab.Leftovers(prefix)
	if err != nil {
		t.Fatal(err)
	}
	spaces := 0
	for _, l := range left {
		if strings.HasPrefix(l, "netns ") {
			spaces++
		}
	}
	// inet + 6 routers + 1 carrier + 7 hosts
	if spaces != 15 {
		t.Errorf("%d namespaces while running, want 15: %v", spaces, left)
	}
	if got := rootLinkNames(t); !slices.Equal(got, linksBefore) {
		t.Errorf("root namespace links changed while running: %v → %v", linksBefore, got)
	}

	if err := lab.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := lab.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case <-proc.Done():
	default:
		t.Error("process still running after Close")
	}
	if !exited(t, childFD) {
		t.Error("grandchild still running after Close")
	}
	if left, err := netlab.Leftovers(prefix); len(left) > 0 || err != nil {
		t.Errorf("left behind: %v (err %v)", left, err)
	}
	if got := netnsFDs(t); !slices.Equal(got, fdsBefore) {
		t.Errorf("namespace fds: before %v, after %v", fdsBefore, got)
	}
	if got := rootLinkNames(t); !slices.Equal(got, linksBefore) {
		t.Errorf("root namespace links changed: %v → %v", linksBefore, got)
	}
	// Nothing reaches into a closed lab (nor, by accident, into this
	// process's own namespace).
	if _, err := h.Start(helperCmd(context.Background(), h, "sleep")); !errors.Is(err, netlab.ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
	if _, err := h.ListenPacket("udp4", ":0"); !errors.Is(err, netlab.ErrClosed) {
		t.Errorf("ListenPacket after Close: %v, want ErrClosed", err)
	}
	if err := h.Partition(); !errors.Is(err, netlab.ErrClosed) {
		t.Errorf("Partition after Close: %v, want ErrClosed", err)
	}
	if _, err := h.LinkStats(); !errors.Is(err, netlab.ErrClosed) {
		t.Errorf("LinkStats after Close: %v, want ErrClosed", err)
	}
	if _, err := h.Network().NATStats(); !errors.Is(err, netlab.ErrClosed) {
		t.Errorf("NATStats after Close: %v, want ErrClosed", err)
	}
	if got := rootLinkNames(t); !slices.Equal(got, linksBefore) {
		t.Errorf("root namespace links changed after use-after-Close: %v → %v", linksBefore, got)
	}
}

// TestProcessInNamespace runs a program on a host and checks it sees the
// host's network, not the machine's.
func TestProcessInNamespace(t *testing.T) {
	lab := labtest.New(t, netlab.Topology{
		Networks: []netlab.NetworkSpec{{Name: "home", NAT: netlab.Easy}},
		Hosts:    []netlab.HostSpec{{Name: "pc", Network: "home"}},
	})
	h := lab.Host("pc")
	cmd := helperCmd(context.Background(), h, "netinfo")
	var out syncBuffer
	cmd.Stdout = &out
	p, err := h.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if p.PID() <= 0 {
		t.Errorf("PID %d", p.PID())
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out.String())
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	got := out.String()
	for _, want := range []string{"addr " + h.Addr().String() + "/24", "addr 127.0.0.1/8", "host pc"} {
		if !strings.Contains(got, want) {
			t.Errorf("process output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "netns "+self) {
		t.Errorf("process ran in this process's namespace:\n%s", got)
	}

	// The shell equivalent reaches the same namespace by name.
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("no ip binary for the `ip netns exec` check")
	}
	out2, err := exec.Command(ip, "netns", "exec", h.Netns(), ip, "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec: %v\n%s", err, out2)
	}
	if !strings.Contains(string(out2), h.Addr().String()+"/24") || !strings.Contains(string(out2), h.Interface()) {
		t.Errorf("ip netns exec %s shows:\n%s", h.Netns(), out2)
	}
}

// TestRunIDTaken: a fixed run ID that a live run holds is refused, and the
// live run is left alone.
func TestRunIDTaken(t *testing.T) {
	labtest.Skip(t)
	topo := netlab.Topology{Networks: []netlab.NetworkSpec{{Name: "pub", NAT: netlab.Public}}}
	a, err := netlab.New(context.Background(), topo, netlab.Config{RunID: "zz9t"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if b, err := netlab.New(context.Background(), topo, netlab.Config{RunID: "zz9t"}); err == nil {
		b.Close()
		t.Fatal("a second lab took a live run's ID")
	}
	if _, err := netlab.New(context.Background(), topo, netlab.Config{RunID: "ZZ"}); !errors.Is(err, netlab.ErrPrefix) {
		t.Errorf("bad run ID: %v, want ErrPrefix", err)
	}
	left, err := netlab.Leftovers(a.Prefix())
	if err != nil || !slices.Contains(left, "netns "+a.Prefix()+"inet") {
		t.Errorf("the live run lost its objects: %v (err %v)", left, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCleanAbandonedRun kills a lab owner with SIGKILL (no teardown runs),
// checks that its run is left behind and found stale, and that Clean removes
// it, including a process left running inside it.
func TestCleanAbandonedRun(t *testing.T) {
	labtest.Skip(t)
	cmd, f, log := startOwner(t, "abandon")
	prefix := f[0]
	orphan, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatal(err)
	}
	orphanFD, err := unix.PidfdOpen(orphan, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(orphanFD)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()

	left, err := netlab.Leftovers(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(left, func(s string) bool { return strings.HasPrefix(s, "process ") }) ||
		!slices.ContainsFunc(left, func(s string) bool { return strings.HasPrefix(s, "netns ") }) {
		t.Fatalf("killed owner left %v; want namespaces and a process\n%s", left, log.String())
	}
	runs, err := netlab.Runs()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(runs, func(r netlab.Run) bool { return r.Prefix == prefix })
	if i < 0 || !runs[i].Stale {
		t.Errorf("runs %+v: want %s listed as stale", runs, prefix)
	}

	removed, err := netlab.Clean(prefix)
	if err != nil {
		t.Fatalf("Clean: %v", err)
	}
	t.Logf("Clean removed %d objects: %v", len(removed), removed)
	if left, err := netlab.Leftovers(prefix); len(left) > 0 || err != nil {
		t.Errorf("after Clean: %v (err %v)", left, err)
	}
	if !exited(t, orphanFD) {
		t.Error("the process left in the lab still runs after Clean")
	}
}

// TestPanicCleansUp lets a test that owns a lab panic: its cleanups still
// tear the lab down.
func TestPanicCleansUp(t *testing.T) {
	labtest.Skip(t)
	cmd, f, log := startOwner(t, "panic")
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("panicking owner exited 0:\n%s", log.String())
	}
	if left, err := netlab.Leftovers(f[0]); len(left) > 0 || err != nil {
		t.Errorf("after a panic: %v (err %v)\n%s", left, err, log.String())
	}
}

// TestInterruptCleansUp sends Ctrl-C (SIGINT) to a test binary that owns a
// lab and a process; labtest.Main tears them down before exiting.
func TestInterruptCleansUp(t *testing.T) {
	labtest.Skip(t)
	cmd, f, log := startOwner(t, "block")
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if left, err := netlab.Leftovers(f[0]); len(left) > 0 || err != nil {
		t.Errorf("after SIGINT: %v (err %v)\n%s", left, err, log.String())
	}
}

// TestTimeoutCleansUp lets a test binary that owns a lab run into
// -test.timeout, which panics without running cleanups; labtest.Main's
// watchdog tears the lab down first. The timeout leaves room for a busy
// machine: at 2 s (watchdog at 1.8 s) the build or the teardown sometimes
// outlasted it and the panic came first (1 of 20 runs under load).
func TestTimeoutCleansUp(t *testing.T) {
	labtest.Skip(t)
	cmd, f, log := startOwner(t, "block", "-test.timeout=12s")
	_ = cmd.Wait()
	if !strings.Contains(log.String(), "test timed out") {
		t.Errorf("owner did not time out:\n%s", log.String())
	}
	if left, err := netlab.Leftovers(f[0]); len(left) > 0 || err != nil {
		t.Errorf("after a timeout: %v (err %v)\n%s", left, err, log.String())
	}
}

// TestHelperOwner is not a test: it is the lab owner that the tests above
// run as a child process and then kill, interrupt or watch panic.
func TestHelperOwner(t *testing.T) {
	mode := os.Getenv(helperTestEnv)
	if mode == "" {
		t.Skip("helper for the lifecycle tests")
	}
	topo := netlab.Topology{
		Networks: []netlab.NetworkSpec{{Name: "pub", NAT: netlab.Public}, {Name: "home", NAT: netlab.CGNAT}},
		Hosts: []netlab.HostSpec{
			{Name: "srv", Network: "pub"},
			{Name: "pc", Network: "home", Link: netlab.Link{Latency: time.Millisecond, Loss: 1}},
		},
	}
	switch mode {
	case "abandon":
		restore := netlab.SetPdeathsigForTest(0) // let the process outlive us
		defer restore()
		lab, err := netlab.New(context.Background(), topo, netlab.Config{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := lab.Host("pc").Start(helperCmd(context.Background(), lab.Host("pc"), "sleep"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("READY", lab.Prefix(), p.PID())
		time.Sleep(helperLife) // until the test kills us
	case "panic":
		lab := labtest.New(t, topo)
		fmt.Println("READY", lab.Prefix())
		panic("deliberate panic with a live lab")
	case "block":
		lab := labtest.New(t, topo)
		if _, err := lab.Host("pc").Start(helperCmd(context.Background(), lab.Host("pc"), "sleep")); err != nil {
			t.Fatal(err)
		}
		fmt.Println("READY", lab.Prefix())
		time.Sleep(helperLife) // until a signal or the timeout
	default:
		t.Fatalf("unknown owner mode %q", mode)
	}
}

// TestCleanRefusesForeignPrefixes: Clean touches lab names only.
func TestCleanRefusesForeignPrefixes(t *testing.T) {
	for _, p := range []string{"", "j", "jm", "jmlab", "jmlab-abcd", "jmlab-ab-", "eth", "veth-", "jmlab-ABCD-", "jmlab-abcd-x"} {
		if _, err := netlab.Clean(p); !errors.Is(err, netlab.ErrPrefix) {
			t.Errorf("Clean(%q) = %v, want ErrPrefix", p, err)
		}
		if _, err := netlab.Leftovers(p); !errors.Is(err, netlab.ErrPrefix) {
			t.Errorf("Leftovers(%q) = %v, want ErrPrefix", p, err)
		}
	}
	for _, p := range []string{netlab.PrefixBase, "jmlab-k3x9-"} {
		if err := netlab.CheckPrefixForTest(p); err != nil {
			t.Errorf("prefix %q refused: %v", p, err)
		}
	}
}

// BenchmarkBuildAndClose builds and tears down the every-preset topology
// (15 namespaces, 14 cables of which 13 are TAP wires).
func BenchmarkBuildAndClose(b *testing.B) {
	labtest.Skip(b)
	for range b.N {
		lab, err := netlab.New(context.Background(), everything(), netlab.Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := lab.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
