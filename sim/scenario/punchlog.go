package scenario

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// technicianKey is a console home's key file (console.KeyFile; the console
// package is not imported for one name).
const technicianKey = "technician.key"

// The hole punch attempt that made a path direct is known only to the
// peer's puncher (mesh/punch), which logs it: `msg="direct connection"
// peer=CONSOLE-ID by=... attempt=N`. A console's ID is that of its
// technician key.

// consoleID is the peer ID of host's console (its technician key); "" when
// it cannot be read.
func (r *runner) consoleID(host string) string {
	r.resMu.Lock()
	defer r.resMu.Unlock()
	if id, ok := r.consoleIDs[host]; ok {
		return id
	}
	id := ""
	if k, err := mesh.LoadKeyFile(filepath.Join(r.home(host), technicianKey)); err == nil {
		if pid, err := peer.IDFromPrivateKey(k); err == nil {
			id = pid.String()
		}
	}
	if r.consoleIDs == nil {
		r.consoleIDs = map[string]string{}
	}
	r.consoleIDs[host] = id
	return id
}

// punchAttempt is the attempt, from 1, at which the puncher on peerHost
// made its connection to console direct at or after since; 0 when its log
// does not say.
func (r *runner) punchAttempt(peerHost, console string, since time.Time) int {
	id := r.consoleID(console)
	if id == "" {
		return 0
	}
	dir := r.peers[peerHost] // the peer's install directory
	if dir == "" {
		return 0
	}
	f, err := os.Open(filepath.Join(dir, "logs", "peer.log"))
	if err != nil {
		return 0
	}
	defer f.Close()
	return directAttempt(bufio.NewScanner(f), id, since)
}

// directAttempt reads slog text lines and returns the attempt of the first
// "direct connection" to remote logged at or after since; 0 for none.
func directAttempt(sc *bufio.Scanner, remote string, since time.Time) int {
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="direct connection"`) || !strings.Contains(line, " peer="+remote+" ") {
			continue
		}
		var at time.Time
		attempt := 0
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "time":
				at, _ = time.Parse(time.RFC3339Nano, v)
			case "attempt":
				attempt, _ = strconv.Atoi(v)
			}
		}
		if !at.IsZero() && !at.Before(since) && attempt > 0 {
			return attempt
		}
	}
	return 0
}
