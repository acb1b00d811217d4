package main

import (
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
)

// Benchmarks against the anchors of issue #4, each a ratio measured in the
// same run on loopback: OpenSSH (sshd on a loopback port, default cipher)
// and raw TCP. They need the real binary, a site with a peer, and sshd;
// `make bench` runs them.

// timeCommand runs name args once and returns its wall time.
func timeCommand(b *testing.B, env []string, name string, args ...string) time.Duration {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return time.Since(start)
}

// sink accepts connections and discards what they send, counting it.
func sink(b *testing.B) (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return ln.Addr().String(), func() { ln.Close() }
}

// throughput sends n bytes to addr and returns bytes per second, measured
// until the far side has read everything (it closes after EOF).
func throughput(b *testing.B, addr string, n int64) float64 {
	b.Helper()
	var c net.Conn
	coordinatortest.Eventually(b, 20*time.Second, "a listener at "+addr, func() bool {
		var err error
		c, err = net.Dial("tcp", addr)
		return err == nil
	})
	defer c.Close()
	buf := make([]byte, 256<<10)
	start := time.Now()
	for sent := int64(0); sent < n; {
		m, err := c.Write(buf[:min(int64(len(buf)), n-sent)])
		if err != nil {
			b.Fatal(err)
		}
		sent += int64(m)
	}
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c) // the far end closes once it has read all
	return float64(n) / time.Since(start).Seconds()
}

// startForwarder runs a port forward command until the benchmark ends and
// returns it once it has printed ready (at once when ready is empty).
func startForwarder(b *testing.B, env []string, ready string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = env
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	if ready != "" {
		coordinatortest.Eventually(b, 20*time.Second, name+" ready", func() bool { return strings.Contains(out.String(), ready) })
	}
	return cmd
}

// BenchmarkForwardThroughput: jumpmesh forward ÷ ssh -L (target ≥ 2.0) and
// ÷ raw TCP (target ≥ 0.35), 256 MiB each way per iteration.
func BenchmarkForwardThroughput(b *testing.B) {
	sd := startSSHD(b)
	s := newJumpSiteTB(b)
	env := append(os.Environ(), "JUMPMESH_HOME="+s.admin)
	target, stop := sink(b)
	defer stop()
	_, tport, _ := net.SplitHostPort(target)
	jmPort, sshPort := freeTCPPort(b), freeTCPPort(b)
	startForwarder(b, env, "forwarding", binary, "forward", "web-01", jmPort+":127.0.0.1:"+tport)
	startForwarder(b, env, "", "ssh", append([]string{"-N", "-L", sshPort + ":127.0.0.1:" + tport}, sd.sshArgs(sd.port)...)...)
	const n = 256 << 20
	throughput(b, "127.0.0.1:"+sshPort, 1<<20) // waits for ssh -L to listen
	var raw, jm, ssh float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		raw += throughput(b, target, n)
		jm += throughput(b, "127.0.0.1:"+jmPort, n)
		ssh += throughput(b, "127.0.0.1:"+sshPort, n)
	}
	mb := float64(b.N) * (1 << 20)
	b.ReportMetric(raw/mb, "raw-MiB/s")
	b.ReportMetric(jm/mb, "jumpmesh-MiB/s")
	b.ReportMetric(ssh/mb, "ssh-MiB/s")
	b.ReportMetric(jm/ssh, "vs-ssh(target≥2)")
	b.ReportMetric(jm/raw, "vs-raw(target≥0.35)")
}
