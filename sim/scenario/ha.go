package scenario

// Several coordinators on one etcd cluster (the ha scenario): etcd hosts
// run the cluster's members, init moves the site to it and runs every
// coordinator host on it with the same site key, and write loads check
// that nothing acknowledged is lost while coordinators and members are
// killed.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/etcdlab"
)

// EtcdBinaryName is the lab's etcd member binary (go build -o
// jumpmesh-lab-etcd ./sim/labetcd), looked for next to the jumpmesh binary
// and in PATH when Options.EtcdBinary is empty; "etcd" in PATH is the
// fallback.
const EtcdBinaryName = etcdlab.BinaryName

// findEtcdBinary is the member binary for sc: "" when sc has no etcd hosts.
func findEtcdBinary(sc *Scenario, given string) (string, error) {
	for _, h := range sc.Hosts {
		if h.Role == RoleEtcd {
			p, err := etcdlab.FindBinary(given)
			if err != nil {
				return "", fmt.Errorf("scenario %s has etcd hosts (--etcd-binary): %w", sc.Name, err)
			}
			return p, nil
		}
	}
	return "", nil
}

func (r *runner) hasEtcd() bool { return r.etcdBin != "" }

// startEtcd runs the cluster on the etcd hosts, moves the site made on the
// first coordinator host to it, and gives every other coordinator host the
// site's key and site.json.
func (r *runner) startEtcd(ctx context.Context, first string) (string, error) {
	var members []etcdlab.Member
	var hosts []string
	for _, h := range r.sc.Hosts {
		if h.Role == RoleEtcd {
			members = append(members, etcdlab.Member{Name: h.Name, Addr: r.lab.Host(h.Name).Addr(), Dir: filepath.Join(r.hostDir(h.Name), "etcd")})
			hosts = append(hosts, h.Name)
		}
	}
	c, err := etcdlab.New(etcdlab.Config{Binary: r.etcdBin, Members: members, Start: func(i int, cmd *exec.Cmd) (etcdlab.Proc, error) {
		return r.lab.Host(hosts[i]).Start(cmd)
	}})
	if err != nil {
		return "", err
	}
	r.etcd = c // teardown closes it, started or not
	if err := c.Start(ctx); err != nil {
		return "", err
	}
	out := fmt.Sprintf("etcd %s (%d members)\n", c.URL(), len(members))
	site := filepath.Join(r.hostDir(first), "site")
	res, err := r.jm(ctx, first, nil, "coordinator", "migrate", "--from", site, "--to", c.URL())
	out += res.output()
	if err != nil {
		return out, err
	}
	for _, h := range r.sc.Hosts {
		if h.Role != RoleCoordinator || h.Name == first {
			continue
		}
		dst := filepath.Join(r.hostDir(h.Name), "site")
		if err := os.MkdirAll(dst, 0o700); err != nil {
			return out, err
		}
		for _, f := range []string{"site.key", "site.json"} {
			b, err := os.ReadFile(filepath.Join(site, f))
			if err == nil {
				err = os.WriteFile(filepath.Join(dst, f), b, 0o600)
			}
			if err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// etcdLifecycle kills, stops or starts again an etcd host's member.
func (r *runner) etcdLifecycle(ctx context.Context, action, name string) (string, error) {
	if r.etcd == nil {
		return "", errors.New("the etcd cluster runs from init on")
	}
	i := -1
	for j, m := range r.etcd.Members() {
		if m.Name == name {
			i = j
		}
	}
	switch {
	case action == "start" && r.etcd.Running(i):
		return "", fmt.Errorf("%s is already running", name)
	case action == "start":
		if err := r.etcd.StartMember(ctx, i); err != nil {
			return "", err
		}
		return name + " serves clients again", nil
	case !r.etcd.Running(i):
		return "", fmt.Errorf("%s is not running", name)
	case action == "stop":
		return "", r.etcd.Stop(i)
	}
	if err := r.etcd.Kill(i); err != nil {
		return "", err
	}
	return "killed " + name + " (SIGKILL)", nil
}

// writeLoad is a console creating installers one after the other until
// stopped, each with its audit event: a write the coordinator
// acknowledges only once etcd committed it.
type writeLoad struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	acked   []string // installer IDs the console was told
	failed  int
	lastErr string
}

// writeTimeout bounds one write of a load: a dead coordinator or a lost
// quorum costs a failed (unacknowledged) write, not a stuck load.
const writeTimeout = 20 * time.Second

// startWrites starts the write load name from console.
func (r *runner) startWrites(ctx context.Context, console, name string) (string, error) {
	lctx, cancel := context.WithCancel(ctx)
	w := &writeLoad{name: name, cancel: cancel, done: make(chan struct{})}
	r.writes[name] = w
	go func() {
		defer close(w.done)
		for n := 0; lctx.Err() == nil; n++ {
			wctx, wcancel := context.WithTimeout(lctx, writeTimeout)
			var in struct{ ID string }
			_, err := r.jm(wctx, console, &in, "installer", "create", "--comments", fmt.Sprintf("writes %s %d", name, n), "--valid-for", "1h", "--json")
			wcancel()
			if lctx.Err() != nil {
				return // a write cut short by the stop is not acknowledged
			}
			w.mu.Lock()
			if err == nil && in.ID != "" {
				w.acked = append(w.acked, in.ID)
			} else {
				w.failed++
				if err != nil {
					w.lastErr = err.Error()
				}
			}
			w.mu.Unlock()
			if err != nil {
				t := time.NewTimer(200 * time.Millisecond)
				select {
				case <-lctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
		}
	}()
	return "writing installers from " + console + " in the background as " + name, nil
}

// expectKept stops the load name and checks that every installer the
// coordinators acknowledged is listed.
func (r *runner) expectKept(ctx context.Context, console, name string) (string, error) {
	w := r.writes[name]
	w.cancel()
	<-w.done
	delete(r.writes, name)
	w.mu.Lock()
	acked, failed, lastErr := w.acked, w.failed, w.lastErr
	w.mu.Unlock()
	var listed []struct{ ID string }
	var res cmdResult
	var err error
	// The console's coordinator may have just been killed: let it find another.
	if !poll(ctx, defaultWithin, func(ctx context.Context) bool {
		res, err = r.jm(ctx, console, &listed, "installer", "list", "--all", "--json")
		return err == nil
	}) {
		return res.output(), fmt.Errorf("listing installers: %v", err)
	}
	have := map[string]bool{}
	for _, in := range listed {
		have[in.ID] = true
	}
	var lost []string
	for _, id := range acked {
		if !have[id] {
			lost = append(lost, id)
		}
	}
	out := fmt.Sprintf("%d writes acknowledged, %d not (failed or cut off), %d lost", len(acked), failed, len(lost))
	if lastErr != "" {
		out += "\nlast failure: " + lastErr
	}
	switch {
	case len(lost) > 0:
		return out, fmt.Errorf("%d acknowledged writes lost: %s", len(lost), strings.Join(lost, ", "))
	case len(acked) == 0:
		return out, errors.New("no write was acknowledged")
	}
	return out, nil
}

// stopWrites stops the loads still running (a failed run's).
func (r *runner) stopWrites() {
	for _, w := range r.writes {
		w.cancel()
		<-w.done
	}
}
