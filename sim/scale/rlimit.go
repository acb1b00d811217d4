package scale

import "golang.org/x/sys/unix"

// filesPerPeer is what one fleet peer costs in file descriptors in this
// process at most: its connection's socket, the coordinator's, and through
// a jumpoint the jumpoint's two (link and coordinator sides), with room for
// reconnects in flight.
const filesPerPeer = 5

// raiseFileLimit lifts this process's open-file limit to what n peers
// need, when the soft limit is lower. Go already raises the soft limit to
// the hard one; a process with CAP_SYS_RESOURCE may raise the hard one too
// (up to fs.nr_open; not root in a container without it, as on the 2-core
// test VM, whose hard limit is 20,000: 5,000 peers through a jumpoint need
// more). It does nothing when it cannot: the run then fails with "too many
// open files", which says what to change.
func raiseFileLimit(n int) {
	need := uint64(n*filesPerPeer + 4096)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= need {
		return
	}
	if lim.Max >= need {
		lim.Cur = need
	} else {
		lim = unix.Rlimit{Cur: need, Max: need}
	}
	_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
}

// openFileLimit raises this process's open-file limit as raiseFileLimit
// does for n peers, and returns the soft limit it then has.
func openFileLimit(n int) int {
	raiseFileLimit(n)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	return int(min(lim.Cur, 1<<30))
}
