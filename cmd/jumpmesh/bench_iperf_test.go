package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
)

// The iperf3 benchmark of issue 17: a client nobody here wrote measures the
// same three paths in one run — iperf3 through `jumpmesh forward`, through
// `ssh -L` to a local sshd (OpenSSH's default cipher), and straight to the
// iperf3 server over loopback TCP — and reports the ratios, plus the CPU
// the console's forward process and the peer spent per GiB carried (from
// /proc: user + system time). `make deps` installs iperf3.

// iperfSeconds is how long each iperf3 pass runs (IPERF_SECONDS, default 3).
func iperfSeconds() int {
	if s, err := strconv.Atoi(os.Getenv("IPERF_SECONDS")); err == nil && s > 0 {
		return s
	}
	return 3
}

// startIperfServer runs iperf3 -s on a free loopback port until the
// benchmark ends, or skips when iperf3 is missing.
func startIperfServer(b *testing.B) string {
	b.Helper()
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed; `make deps` installs it as root")
	}
	port := freeTCPPort(b)
	cmd := exec.Command("iperf3", "-s", "--forceflush", "-B", "127.0.0.1", "-p", port)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	coordinatortest.Eventually(b, 20*time.Second, "iperf3 -s listening", func() bool { return strings.Contains(out.String(), "Server listening") })
	return port
}

// iperfResult is the part of iperf3 -J's report the benchmark reads.
type iperfResult struct {
	End struct {
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// iperf runs one iperf3 client pass to port (reverse: the server sends)
// and returns the bytes received and the rate in bytes per second. iperf3
// refuses a test while the server still runs the previous one, so a busy
// server is retried until a deadline.
func iperf(b *testing.B, port string, reverse bool, streams int) (bytes, rate float64) {
	b.Helper()
	args := []string{"-c", "127.0.0.1", "-p", port, "-t", strconv.Itoa(iperfSeconds()), "-P", strconv.Itoa(streams), "-J"}
	if reverse {
		args = append(args, "-R")
	}
	var r iperfResult
	coordinatortest.Eventually(b, 60*time.Second, "an iperf3 pass to "+port, func() bool {
		out, _ := exec.Command("iperf3", args...).Output()
		r = iperfResult{}
		if err := json.Unmarshal(out, &r); err != nil {
			b.Logf("iperf3 %v: %v\n%s", args, err, out)
			return false
		}
		if r.Error != "" {
			b.Logf("iperf3 %v: %s", args, r.Error)
			return false
		}
		return true
	})
	return r.End.SumReceived.Bytes, r.End.SumReceived.BitsPerSecond / 8
}

// procCPU is a process's user + system CPU time so far.
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th of the whole line, in clock ticks (100 a second).
	f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+stime) * 10 * time.Millisecond
}

// procSyscalls is the read and write system calls a process made so far
// (syscr + syscw of /proc/PID/io: reads, writes and their vector forms).
func procSyscalls(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && (k == "syscr" || k == "syscw") {
			c, _ := strconv.ParseInt(v, 10, 64)
			n += c
		}
	}
	return n
}

// peerPID is the PID of the site's peer, from its pid file.
func (s *jumpSite) peerPID(b *testing.B) int {
	b.Helper()
	data, err := os.ReadFile(filepath.Join(s.hostDir, "run", "peer.pid"))
	if err != nil {
		b.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		b.Fatal(err)
	}
	return pid
}

// loadAverage is the first field of /proc/loadavg, for the log.
func loadAverage() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// profileDir is JUMPMESH_BENCH_PROFILE: when set, the first jumpmesh pass
// of each direction runs under perf (a CPU profile of the console's forward
// process and of the peer, perf record -g, and their system calls, context
// switches and CPU time, perf stat), written there for perf report.
func profileDir() string { return os.Getenv("JUMPMESH_BENCH_PROFILE") }

// perfAttach attaches perf record and perf stat to each pid and returns a
// function that stops them (SIGINT: perf writes its files) and waits.
func perfAttach(b *testing.B, dir, pass string, pids map[string]int) func() {
	b.Helper()
	var cmds []*exec.Cmd
	for name, pid := range pids {
		p := strconv.Itoa(pid)
		base := filepath.Join(dir, pass+"-"+name)
		cmds = append(cmds,
			exec.Command("perf", "record", "-q", "-F", "999", "-g", "-o", base+".perf.data", "-p", p),
			exec.Command("perf", "stat", "-e", "raw_syscalls:sys_enter,context-switches,task-clock", "-o", base+".stat", "-p", p))
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			b.Fatalf("perf: %v", err)
		}
	}
	time.Sleep(200 * time.Millisecond) // perf attaches before the pass starts
	return func() {
		for _, c := range cmds {
			c.Process.Signal(os.Interrupt)
		}
		for _, c := range cmds {
			c.Wait()
		}
	}
}

// BenchmarkForwardIperf3: iperf3 (one stream, 128 KiB writes) through
// `jumpmesh forward` ÷ through `ssh -L` (target ≥ 2) and ÷ straight over
// loopback TCP (target ≥ 0.35), each direction, all in one run, beside
// the floor (bench_floor_test.go); and the
// CPU-seconds per GiB of the console's forward process and of the peer,
// and their read and write system calls per MiB.
func BenchmarkForwardIperf3(b *testing.B) {
	port := startIperfServer(b)
	sd := startSSHD(b)
	s := newJumpSiteTB(b)
	env := append(os.Environ(), "JUMPMESH_HOME="+s.admin)
	jmPort, sshPort := freeTCPPort(b), freeTCPPort(b)
	fw := startForwarder(b, env, "forwarding", binary, "forward", "web-01", jmPort+":127.0.0.1:"+port)
	startForwarder(b, env, "", "ssh", append([]string{"-N", "-L", sshPort + ":127.0.0.1:" + port}, sd.sshArgs(sd.port)...)...)
	peer := s.peerPID(b)
	b.Logf("load average before: %s", loadAverage())
	floor := floorForward(b, "127.0.0.1:"+port)
	var raw, jm, ssh, flo, jmBytes, floBytes [2]float64
	var floCPU time.Duration
	var conCPU, peerCPU time.Duration
	var conCalls, peerCalls int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for d, reverse := range []bool{false, true} {
			_, r := iperf(b, port, reverse, 1)
			raw[d] += r
			stopPerf := func() {}
			if dir := profileDir(); dir != "" && i == 0 {
				stopPerf = perfAttach(b, dir, []string{"up", "down"}[d], map[string]int{"console": fw.Process.Pid, "peer": peer})
			}
			c0, p0 := procCPU(b, fw.Process.Pid), procCPU(b, peer)
			cs0, ps0 := procSyscalls(b, fw.Process.Pid), procSyscalls(b, peer)
			n, r := iperf(b, jmPort, reverse, 1)
			conCPU += procCPU(b, fw.Process.Pid) - c0
			peerCPU += procCPU(b, peer) - p0
			conCalls += procSyscalls(b, fw.Process.Pid) - cs0
			peerCalls += procSyscalls(b, peer) - ps0
			stopPerf()
			jm[d] += r
			jmBytes[d] += n
			_, r = iperf(b, sshPort, reverse, 1)
			ssh[d] += r
			f0 := procCPU(b, os.Getpid())
			n, r = iperf(b, floor, reverse, 1)
			floCPU += procCPU(b, os.Getpid()) - f0
			flo[d] += r
			floBytes[d] += n
		}
	}
	b.StopTimer()
	b.Logf("load average after: %s", loadAverage())
	mib := float64(b.N) * (1 << 20)
	for d, name := range []string{"up", "down"} {
		b.ReportMetric(raw[d]/mib, name+"-raw-MiB/s")
		b.ReportMetric(jm[d]/mib, name+"-jumpmesh-MiB/s")
		b.ReportMetric(ssh[d]/mib, name+"-ssh-MiB/s")
		b.ReportMetric(jm[d]/ssh[d], name+"-vs-ssh(target≥2)")
		b.ReportMetric(jm[d]/raw[d], name+"-vs-raw(target≥0.35)")
		b.ReportMetric(flo[d]/mib, name+"-floor-MiB/s")
	}
	gib := (jmBytes[0] + jmBytes[1]) / (1 << 30)
	b.ReportMetric(conCPU.Seconds()/gib, "console-CPU-s/GiB")
	b.ReportMetric(peerCPU.Seconds()/gib, "peer-CPU-s/GiB")
	b.ReportMetric(floCPU.Seconds()/((floBytes[0]+floBytes[1])/(1<<30)), "floor-CPU-s/GiB(both-hops)")
	b.ReportMetric(float64(conCalls)/gib/1024, "console-rw-syscalls/MiB")
	b.ReportMetric(float64(peerCalls)/gib/1024, "peer-rw-syscalls/MiB")
}
