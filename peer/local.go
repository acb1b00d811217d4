package peer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Local commands on an installed peer: status, disable/enable, uninstall.

// PIDFile is where a running peer keeps its process ID.
func PIDFile(dir string) string { return filepath.Join(dir, runDir, pidFileName) }

// runningPID returns the running daemon's PID, or 0. run/peer.pid is
// written by the peer's user: a PID counts only if it is this peer's
// process (isPeerProcess), so root never signals what the user names.
func runningPID(dir string) int {
	raw, err := readLocalFile(PIDFile(dir))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return 0
	}
	if syscall.Kill(pid, 0) != nil || !isPeerProcess(dir, pid) {
		return 0
	}
	return pid
}

// isPeerProcess reports whether pid runs this install's jumpmesh binary
// as the user who owns run/ (the peer's user): /proc/PID/exe and the owner
// of /proc/PID. The binary and run/ itself are root's in an install by
// root, so the user can make neither name another process. Linux only.
func isPeerProcess(dir string, pid int) bool {
	bin, err := filepath.EvalSymlinks(filepath.Join(dir, binaryFile))
	if err != nil {
		return false
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return false
	}
	proc := "/proc/" + strconv.Itoa(pid)
	exe, err := os.Readlink(proc + "/exe")
	if err != nil || (exe != bin && exe != bin+" (deleted)") {
		return false
	}
	procUID, ok := ownerOf(proc)
	runUID, ok2 := ownerOf(filepath.Join(dir, runDir))
	return ok && ok2 && procUID == runUID
}

// ownerOf is the user ID owning path (not following a final symlink).
func ownerOf(path string) (uint32, bool) {
	st, err := os.Lstat(path)
	if err != nil {
		return 0, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return sys.Uid, true
}

// Status is what `jumpmesh peer status` shows.
type Status struct {
	Dir       string `json:"dir"`
	PeerID    string `json:"peer_id"`
	Site      string `json:"site"`
	Name      string `json:"name,omitempty"`
	Running   bool   `json:"running"`
	PID       int    `json:"pid,omitempty"`
	Connected bool   `json:"connected"`
	Disabled  bool   `json:"disabled"`
	// Restricted: local disable, enable and uninstall are root's only, as
	// the site's statement of RestrictionStated says (zero: no valid one).
	Restricted        bool      `json:"restricted"`
	RestrictionStated time.Time `json:"restriction_stated,omitzero"`
	Contacted         bool      `json:"contacted"`
	LastContact       time.Time `json:"last_contact,omitzero"`
	FirstContactBy    time.Time `json:"first_contact_by,omitzero"`
	OfflineLimit      string    `json:"offline_limit"`
	LastError         string    `json:"last_error,omitempty"`
	LastErrorCode     string    `json:"last_error_code,omitempty"`
	LastErrorAt       time.Time `json:"last_error_at,omitzero"`
	Relays            []string  `json:"relays,omitempty"`
	// NAT is what the peer last learnt of its NAT from its observers.
	NAT *NAT `json:"nat,omitempty"`
	// Connection is "active" or "passive" (as the coordinator last said;
	// "" before the first welcome). A running passive peer listens on
	// PassiveListen for a wake command; Passive is true while it has gone
	// passive (not connected), since PassiveSince. PassiveCounters count
	// what its listener accepted and refused, by reason.
	Connection      string           `json:"connection,omitempty"`
	Passive         bool             `json:"passive,omitempty"`
	PassiveSince    time.Time        `json:"passive_since,omitzero"`
	PassiveListen   string           `json:"passive_listen,omitempty"`
	PassiveError    string           `json:"passive_error,omitempty"`
	PassiveCounters *PassiveCounters `json:"passive_counters,omitempty"`
}

// LocalStatus reads an install directory.
func LocalStatus(dir string) (*Status, error) {
	c, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	s, err := LoadState(dir)
	if err != nil {
		return nil, err
	}
	key, err := mesh.LoadKeyFile(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, err
	}
	id, err := peerIDOf(key)
	if err != nil {
		return nil, err
	}
	pid := runningPID(dir)
	r := restrictionOf(dir, c, s.LocalPolicy, id)
	st := &Status{Dir: dir, PeerID: id.String(), Site: c.Site, Name: s.Name, Running: pid != 0, PID: pid,
		Connected: pid != 0 && s.Connected, Disabled: disabledFor(dir, r.restricted), Restricted: r.restricted, RestrictionStated: r.issued,
		Contacted: s.Contacted, LastContact: s.LastContact,
		OfflineLimit: humanDuration(c.offlineLimit(s)), Relays: s.Relays, NAT: s.NAT, LastError: s.LastError, LastErrorCode: s.LastErrorCode, LastErrorAt: s.LastErrorAt}
	if !s.Contacted {
		st.FirstContactBy = c.FirstContactBy
	}
	st.Connection = s.ConnectionType
	if pid != 0 {
		st.Passive, st.PassiveListen, st.PassiveError, st.PassiveCounters = s.Listening, s.PassiveListen, s.PassiveError, s.PassiveCounters
		if s.Listening {
			st.PassiveSince = s.PassiveSince
		}
	}
	return st, nil
}

// checkLocalRight refuses local disable/uninstall by non-root users when the
// site restricts them (seeds: only users with privileges on the host), by
// the site's signed statement, not by anything the user can write.
func checkLocalRight(dir, what string, euid int) error {
	if euid == 0 {
		return nil
	}
	r, _, err := loadRestriction(dir)
	if err != nil {
		return err
	}
	if r.restricted {
		return catalog.Errorf(catalog.CodePermissionDenied, "(the site restricts local %s of peers to root%s)", what, r.why)
	}
	return nil
}

// SetDisabled disables (the peer refuses jumps) or enables the peer, and
// tells a running daemon (SIGHUP), which tells the coordinator.
func SetDisabled(dir string, disabled bool, euid int) error {
	if _, err := LoadConfig(dir); err != nil {
		return err
	}
	what := "disable"
	if !disabled {
		what = "enable"
	}
	if err := checkLocalRight(dir, what, euid); err != nil {
		return err
	}
	// var/ is the peer's user's: write by rename, never through a link
	// the user left there (root runs this too).
	path := filepath.Join(userDir(dir), disabledFile)
	if disabled {
		if err := mesh.WriteFileAtomic(path, []byte("disabled by the local user\n"), privateFileMode); err != nil {
			return err
		}
	} else if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if pid := runningPID(dir); pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGHUP)
	}
	return nil
}

// UninstallOptions tune a local uninstall.
type UninstallOptions struct {
	EUID    int
	Version string
	// Timeout bounds telling the coordinator (best effort).
	Timeout time.Duration
	Sys     SysSource
}

// Uninstall stops the daemon, tells the coordinator when it can be reached,
// and removes the install directory. It reports whether the coordinator
// was told.
func Uninstall(ctx context.Context, dir string, opts UninstallOptions) (told bool, err error) {
	if _, err := LoadConfig(dir); err != nil {
		return false, err
	}
	if err := checkLocalRight(dir, "uninstall", opts.EUID); err != nil {
		return false, err
	}
	if err := stopDaemon(dir, 10*time.Second); err != nil {
		return false, err
	}
	told = tellGoodbye(ctx, dir, opts) == nil
	if err := os.RemoveAll(dir); err != nil {
		return told, fmt.Errorf("removing %s: %w", dir, err)
	}
	return told, nil
}

// stopDaemon sends SIGTERM to a running daemon and waits for it to end.
func stopDaemon(dir string, timeout time.Duration) error {
	pid := runningPID(dir)
	if pid == 0 {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping the peer (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		<-tick.C
	}
	return fmt.Errorf("the peer (pid %d) did not stop within %s", pid, timeout)
}

// tellGoodbye says hello and goodbye to the coordinator.
func tellGoodbye(ctx context.Context, dir string, opts UninstallOptions) error {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d, err := Open(RunConfig{Dir: dir, Version: opts.Version, Sys: opts.Sys})
	if err != nil {
		return err
	}
	defer d.Close()
	ms, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer ms.Close()
	hello := &pb.PeerUp{Body: &pb.PeerUp_Hello{Hello: &pb.PeerHello{InstallerKey: d.config.InstallerKey,
		Info: opts.Sys.HostInfo(opts.Version), Overrides: d.config.Overrides.toPB(), OverrideFields: d.config.OverrideFields}}}
	if err := ms.Write(hello, sendTimeout); err != nil {
		return err
	}
	var down pb.PeerDown
	if err := ms.Read(&down, replyTimeout); err != nil {
		return err
	}
	if down.GetWelcome() == nil {
		return fmt.Errorf("the coordinator did not welcome the goodbye: %v", down.GetBody())
	}
	if err := ms.Write(&pb.PeerUp{Body: &pb.PeerUp_Goodbye{Goodbye: &pb.PeerGoodbye{Reason: "uninstalled on the host"}}}, sendTimeout); err != nil {
		return err
	}
	// Wait for the coordinator to end the stream: closing the connection
	// at once could drop the goodbye before it is delivered.
	_ = ms.Stream().CloseWrite()
	_ = ms.Read(&down, replyTimeout)
	return nil
}

// humanDuration prints whole days as "180d", anything else as Go does.
func humanDuration(d time.Duration) string {
	if day := 24 * time.Hour; d >= day && d%day == 0 {
		return strconv.Itoa(int(d/day)) + "d"
	}
	return d.String()
}
