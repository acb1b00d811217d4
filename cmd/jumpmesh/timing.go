package main

import (
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// TimingOriginEnv, when set to a Unix time in nanoseconds, is the start of
// the process for jump --timing: a benchmark that starts jumpmesh sets it
// to the moment it called exec. Without it the kernel's start time of the
// process is used (to the clock tick, 10 ms).
const TimingOriginEnv = "JUMPMESH_TIMING_ORIGIN"

// processStart is when this process started, as well as it can be known.
func processStart() time.Time {
	if v := os.Getenv(TimingOriginEnv); v != "" {
		if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.Unix(0, ns)
		}
	}
	now := time.Now()
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return now
	}
	// Field 22 is the start time in clock ticks since boot; the command
	// name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(stat), ')')
	fields := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(fields) < 20 {
		return now
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	var boot unix.Timespec
	if err != nil || unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot) != nil {
		return now
	}
	const ticksPerSecond = 100 // USER_HZ, the same on every Linux architecture we build for
	sinceBoot := time.Duration(boot.Nano())
	started := time.Duration(ticks) * time.Second / ticksPerSecond
	if started > sinceBoot {
		return now
	}
	return now.Add(started - sinceBoot)
}
