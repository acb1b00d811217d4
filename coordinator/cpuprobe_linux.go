package coordinator

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// cpuProbe reads, between calls, the machine's idle share of its cores
// (/proc/stat's first line: idle and iowait over all) and this process's
// CPU time (getrusage) as a share of GOMAXPROCS, for the handshake gate:
// a scheduling latency above its target while cores idle and the
// coordinator's own do not run full is the kernel's sharing, not a queue.
type cpuProbe struct {
	idle, total uint64
	self        time.Duration
	at          time.Time
}

func newCPUProbe() *cpuProbe {
	p := &cpuProbe{}
	p.read()
	return p
}

// read returns the shares since the last call; ok is false on the first
// call, when /proc/stat cannot be read, or when no time passed.
func (p *cpuProbe) read() (idle, self float64, ok bool) {
	now := time.Now()
	idleT, totalT, statOK := procStat()
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil || !statOK {
		return 0, 0, false
	}
	selfT := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	prev := *p
	p.idle, p.total, p.self, p.at = idleT, totalT, selfT, now
	wall := now.Sub(prev.at)
	if prev.at.IsZero() || totalT <= prev.total || wall <= 0 {
		return 0, 0, false
	}
	idle = float64(idleT-prev.idle) / float64(totalT-prev.total)
	self = float64(selfT-prev.self) / (float64(wall) * float64(runtime.GOMAXPROCS(0)))
	return idle, self, true
}

// procStat sums /proc/stat's "cpu" line: idle (with iowait) and in all
// (user through steal; guest time is counted in user already).
func procStat() (idle, total uint64, ok bool) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := bytes.Cut(raw, []byte{'\n'})
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return idle, total, true
}
