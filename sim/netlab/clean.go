package netlab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ownerDir holds one file per run, named by its prefix, with the PID and
// start time of the process that owns the run. It is written before any
// namespace exists and removed after the last one is gone.
const ownerDir = "/run/jmlab"

// prefixRE is compiled at its first use: every jumpmesh process, a jump's
// included, initialises this package (issue 17).
var prefixRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^` + PrefixBase + `([a-z0-9]{` + strconv.Itoa(runIDLen) + `}-)?$`)
})

// checkPrefix accepts a run's prefix ("jmlab-k3x9-") or PrefixBase itself
// (every run), and nothing else: Clean never touches a name the lab did not
// make.
func checkPrefix(prefix string) error {
	if !prefixRE().MatchString(prefix) {
		return fmt.Errorf("%w: %q (want %s<id>- or %s)", ErrPrefix, prefix, PrefixBase, PrefixBase)
	}
	return nil
}

func ownerPath(prefix string) string { return filepath.Join(ownerDir, prefix) }

func writeOwner(prefix string) error {
	if err := os.MkdirAll(ownerDir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(ownerPath(prefix), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	pid := os.Getpid()
	_, err = fmt.Fprintf(f, "%d %d\n", pid, procStartTime(pid))
	return errors.Join(err, f.Close())
}

func removeOwner(prefix string) error {
	if err := os.Remove(ownerPath(prefix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// procStartTime returns field 22 of /proc/PID/stat (start time in clock
// ticks), which tells a PID's owner from a later process given the same PID;
// 0 if the process does not exist.
func procStartTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// Run is a lab run found on this machine.
type Run struct {
	Prefix string
	// OwnerPID is the process that built the run; 0 if its owner file is
	// missing.
	OwnerPID int
	// Stale is true when the owner is gone: the run crashed or was killed.
	Stale bool
}

// Runs lists the runs that have an owner file or a namespace on this machine.
func Runs() ([]Run, error) {
	found := map[string]bool{}
	spaces, err := namedNetns(PrefixBase)
	if err != nil {
		return nil, err
	}
	for _, n := range spaces {
		if p := runPrefix(n); p != "" {
			found[p] = true
		}
	}
	owners, err := os.ReadDir(ownerDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range owners {
		if checkPrefix(e.Name()) == nil && e.Name() != PrefixBase {
			found[e.Name()] = true
		}
	}
	var runs []Run
	for p := range found {
		r := Run{Prefix: p, Stale: true}
		if b, err := os.ReadFile(ownerPath(p)); err == nil {
			var pid int
			var start uint64
			if _, err := fmt.Sscan(string(b), &pid, &start); err == nil {
				r.OwnerPID = pid
				r.Stale = procStartTime(pid) != start
			}
		}
		runs = append(runs, r)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Prefix < runs[j].Prefix })
	return runs, nil
}

// runPrefix returns the run prefix of a lab object's name, or "".
func runPrefix(name string) string {
	n := len(PrefixBase) + runIDLen + 1
	if len(name) < n || checkPrefix(name[:n]) != nil {
		return ""
	}
	return name[:n]
}

// CleanStale removes every run whose owner process is gone and returns what
// it removed. Runs of live processes are left alone.
func CleanStale() ([]string, error) {
	runs, err := Runs()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, r := range runs {
		if !r.Stale {
			continue
		}
		rm, err := Clean(r.Prefix)
		removed = append(removed, rm...)
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

// Clean removes everything whose name starts with prefix: processes inside
// those namespaces (found by namespace identity, killed by PID), the named
// namespaces, links and nft tables in this namespace, and owner files. It
// returns a line per object removed. prefix must be a run's prefix or
// PrefixBase (every run, live ones included).
func Clean(prefix string) ([]string, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	spaces, err := namedNetns(prefix)
	errs = append(errs, err)
	for _, name := range spaces {
		killed, err := killInNetns(name)
		errs = append(errs, err)
		for _, pid := range killed {
			removed = append(removed, fmt.Sprintf("process %d in %s", pid, name))
		}
		if err := deleteNetns(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "netns "+name)
	}
	links, err := rootLinks(prefix)
	errs = append(errs, err)
	for _, lk := range links {
		if err := netlink.LinkDel(lk); err != nil {
			errs = append(errs, fmt.Errorf("deleting link %s: %w", lk.Attrs().Name, err))
			continue
		}
		removed = append(removed, "link "+lk.Attrs().Name)
	}
	tables, err := rootTables(prefix)
	errs = append(errs, err)
	if len(tables) > 0 {
		c, err := nftables.New()
		if err == nil {
			for _, t := range tables {
				c.DelTable(t)
			}
			err = c.Flush()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("deleting nft tables: %w", err))
		} else {
			for _, t := range tables {
				removed = append(removed, "nft table "+t.Name)
			}
		}
	}
	owners, _ := filepath.Glob(filepath.Join(ownerDir, prefix+"*"))
	for _, o := range owners {
		if err := os.Remove(o); err == nil {
			removed = append(removed, "owner file "+o)
		}
	}
	return removed, errors.Join(errs...)
}

// Leftovers lists what exists with prefix: named namespaces, processes in
// them, links and nft tables in this namespace, owner files. A finished run
// has none.
func Leftovers(prefix string) ([]string, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	spaces, err := namedNetns(prefix)
	errs = append(errs, err)
	for _, n := range spaces {
		out = append(out, "netns "+n)
		pids, _ := pidsInNetns(filepath.Join(netnsDir, n))
		for _, pid := range pids {
			out = append(out, fmt.Sprintf("process %d in %s", pid, n))
		}
	}
	links, err := rootLinks(prefix)
	errs = append(errs, err)
	for _, lk := range links {
		out = append(out, "link "+lk.Attrs().Name)
	}
	tables, err := rootTables(prefix)
	errs = append(errs, err)
	for _, t := range tables {
		out = append(out, "nft table "+t.Name)
	}
	owners, _ := filepath.Glob(filepath.Join(ownerDir, prefix+"*"))
	for _, o := range owners {
		out = append(out, "owner file "+o)
	}
	return out, errors.Join(errs...)
}

// namedNetns lists the names under /run/netns that start with prefix.
func namedNetns(prefix string) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// rootLinks lists links with the prefix in this process's namespace. The lab
// creates none here (both ends of every cable are born in lab namespaces),
// so any is debris of a crash in the middle of a move.
func rootLinks(prefix string) ([]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	var out []netlink.Link
	for _, lk := range links {
		if strings.HasPrefix(lk.Attrs().Name, prefix) {
			out = append(out, lk)
		}
	}
	return out, nil
}

// rootTables lists nft tables with the prefix in this process's namespace.
func rootTables(prefix string) ([]*nftables.Table, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	tables, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("listing nft tables: %w", err)
	}
	var out []*nftables.Table
	for _, t := range tables {
		if strings.HasPrefix(t.Name, prefix) {
			out = append(out, t)
		}
	}
	return out, nil
}

// pidsInNetns returns the processes (other than this one) whose network
// namespace is the one mounted at path, by namespace identity (device and
// inode), never by name.
func pidsInNetns(path string) ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue // gone, or a kernel thread
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			out = append(out, pid)
		}
	}
	return out, nil
}

// killInNetns kills every process left in the named namespace, waits for
// each to exit and returns their PIDs. Each PID is pinned with a pidfd and
// checked again against the namespace before the signal, so a PID reused in
// between is never hit.
func killInNetns(name string) ([]int, error) {
	path := filepath.Join(netnsDir, name)
	pids, err := pidsInNetns(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var killed []int
	var errs []error
	for _, pid := range pids {
		hit, err := killPinned(pid, path)
		if err != nil {
			errs = append(errs, fmt.Errorf("process %d in %s: %w", pid, name, err))
		}
		if hit {
			killed = append(killed, pid)
		}
	}
	return killed, errors.Join(errs...)
}

// killPinned kills pid if it is still in the namespace at nsPath and waits
// for it to exit; hit reports whether it was signalled.
func killPinned(pid int, nsPath string) (hit bool, err error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if err == unix.ESRCH {
			return false, nil
		}
		return false, err
	}
	defer unix.Close(fd)
	var want, st unix.Stat_t
	if unix.Stat(nsPath, &want) != nil || unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil ||
		st.Dev != want.Dev || st.Ino != want.Ino {
		return false, nil // not the process we found
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		if err == unix.ESRCH {
			return false, nil
		}
		return false, err
	}
	// A pidfd polls readable once the process has exited; a zombie no
	// longer holds its namespaces.
	deadline := time.Now().Add(procKillWait)
	for time.Now().Before(deadline) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return true, err
		}
		if n > 0 {
			return true, nil
		}
	}
	return true, fmt.Errorf("still running %v after SIGKILL", procKillWait)
}
