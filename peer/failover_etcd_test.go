package peer_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// haSite is a site served by two coordinators, "a" and "b", on one etcd
// member, on the wall clock (the connection rate is measured).
// newHASite starts the instances named (both when none is).
type haSite struct {
	t         *testing.T
	resources coordinator.Resources
	data      string
	store     coordinator.StoreConfig
	listen    map[string]string
	coords    map[string]*coordinator.Coordinator
	admin     *console.Client
}

func newHASite(t *testing.T, instances ...string) *haSite {
	t.Helper()
	return newHASiteWith(t, coordinator.Resources{}, instances...)
}

// newHASiteWith is newHASite with the coordinators' resources.
func newHASiteWith(t *testing.T, resources coordinator.Resources, instances ...string) *haSite {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	dir := t.TempDir()
	s := &haSite{t: t, resources: resources, data: filepath.Join(dir, "site"), store: coordinator.StoreConfig{URL: "etcd://" + srv.Endpoint},
		listen: map[string]string{"a": tcpAddr(coordinatortest.FreePort(t, "tcp")), "b": tcpAddr(coordinatortest.FreePort(t, "tcp"))},
		coords: map[string]*coordinator.Coordinator{}}
	res, err := coordinator.InitSite(coordinator.InitConfig{DataDir: s.data, HTTPAddr: "off", Listen: []string{s.listen["a"]}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := coordinator.Migrate(coordinator.MigrateConfig{DataDir: s.data, To: s.store}); err != nil {
		t.Fatal(err)
	}
	if len(instances) == 0 {
		instances = []string{"a", "b"}
	}
	for _, i := range instances {
		s.start(i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.admin, _, err = console.Login(ctx, filepath.Join(dir, "admin"), res.LoginAddrs[0].String(), res.InviteCode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.admin.Close() })
	return s
}

func (s *haSite) start(instance string) *coordinator.Coordinator {
	s.t.Helper()
	st := s.store
	st.Instance = instance
	c, err := coordinator.New(coordinator.Config{DataDir: s.data, Listen: []string{s.listen[instance]}, HTTPAddr: "off", Store: st,
		Resources: s.resources})
	if err != nil {
		s.t.Fatalf("starting coordinator %s: %v", instance, err)
	}
	s.coords[instance] = c
	s.t.Cleanup(func() { c.Close() })
	return c
}

func (s *haSite) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	s.t.Cleanup(cancel)
	return ctx
}

// installer makes an installer key once it names both coordinators.
func (s *haSite) installer() string { return s.installerNaming("a", "b") }

// installerNaming makes an installer key once it names exactly the
// coordinators given (the live ones).
func (s *haSite) installerNaming(instances ...string) string {
	s.t.Helper()
	var want []string
	for _, i := range instances {
		want = append(want, s.listen[i])
	}
	slices.Sort(want)
	var key string
	coordinatortest.Eventually(s.t, 20*time.Second, "an installer key naming "+strings.Join(instances, ", "), func() bool {
		resp, err := s.admin.Call(s.ctx(), &pb.Request{Body: &pb.Request_InstallerCreate{InstallerCreate: &pb.InstallerCreateRequest{
			Overridable: uint32(installerkey.FieldName), ValidForSeconds: int64(week() / time.Second)}}})
		if err != nil {
			s.t.Fatal(err)
		}
		key = resp.GetInstaller().GetKey()
		k, err := installerkey.Parse(key)
		if err != nil {
			s.t.Fatal(err)
		}
		var got []string
		for _, a := range k.SiteAddrs {
			got = append(got, a.String())
		}
		slices.Sort(got)
		return slices.Equal(got, want)
	})
	return key
}

// installWall installs a peer named name from key into a new directory.
func installWall(t *testing.T, key, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "jumpmesh")
	uid := 1000
	if _, err := peer.Install(peer.InstallOptions{Key: key, Dir: dir, Binary: os.Args[0], EUID: &uid,
		Overrides: peer.Overrides{Name: name}, OverrideFields: installerkey.FieldName}); err != nil {
		t.Fatalf("install %s: %v", name, err)
	}
	return dir
}

// openWall opens the peer installed in dir on the wall clock, with the
// daemon's default reconnect backoff (1 s, doubling); runWall runs it.
func openWall(t *testing.T, dir string) *host {
	t.Helper()
	d, err := peer.Open(peer.RunConfig{Dir: dir, Version: "test"})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	h := &host{t: t, dir: dir, d: d}
	t.Cleanup(func() { d.Close() })
	return h
}

func (h *host) runWall() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.d.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

// heldBy is the coordinator instance whose address the peer's connection
// to the site goes to ("" if none).
func (s *haSite) heldBy(d *peer.Daemon) string {
	for _, c := range peer.HostOf(d).Network().ConnsToPeer(peer.CoordinatorOf(d).ID) {
		for name, l := range s.listen {
			if c.RemoteMultiaddr().Equal(ma.StringCast(l)) {
				return name
			}
		}
	}
	return ""
}

// TestPeersFailOverBetweenCoordinators (issue 16 part 2): two coordinators
// of one site on one etcd. The installer key names both; N peers come
// online (most through one of them: libp2p dials both addresses, the
// first to answer wins); the coordinator holding more is closed. Every
// peer is online again through the survivor, within the connection rate's
// bound (N ÷ connection-rate, plus the reconnect backoff's first wait of
// up to 1 s), the administrator's console reaches the survivor from the
// addresses its answers carried, a console session opened through the
// dead coordinator's grant keeps running (it is console↔peer), and a new
// jump goes through the survivor. JM_FAILOVER_PEERS=N runs N peers at
// connection-rate N÷4 for a figure.
func TestPeersFailOverBetweenCoordinators(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (harness_test.go)
	n, rate := 24, 12.0
	if v, err := strconv.Atoi(os.Getenv("JM_FAILOVER_PEERS")); err == nil && v > 0 {
		n, rate = v, float64(v)/4 // a figure: about 4 s at the bound
	}
	s := newHASite(t)
	if _, err := s.admin.SetSettings(s.ctx(), map[string]string{"connection-rate": strconv.FormatFloat(rate, 'f', -1, 64)}); err != nil {
		t.Fatal(err)
	}
	key := s.installer()
	// Every peer enrolls through "a" ("b" is down a while), then "b" is
	// back: "a" tells its peers the new list (tellPeersOfMembers).
	if err := s.coords["b"].Close(); err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for i := range n {
		dirs = append(dirs, installWall(t, key, fmt.Sprintf("web-%02d", i)))
	}
	var hosts []*host
	for _, dir := range dirs {
		hosts = append(hosts, openWall(t, dir))
	}
	enrolling := time.Now()
	for _, h := range hosts {
		h.runWall()
	}
	online := func(name string) int {
		count := 0
		for _, h := range hosts {
			if st, err := peer.LoadState(h.dir); err == nil && st.Connected && s.heldBy(h.d) == name {
				count++
			}
		}
		return count
	}
	deadline := time.Now().Add(60 * time.Second)
	for online("a")+online("b") != n {
		if time.Now().After(deadline) {
			for _, h := range hosts[:3] {
				st, err := peer.LoadState(h.dir)
				t.Logf("%s: %+v %v held by %q", h.dir, st, err, s.heldBy(h.d))
			}
			t.Fatal("not every peer online")
		}
		time.Sleep(100 * time.Millisecond)
	}
	enrolled := time.Since(enrolling) // the anchor: the same peers' first registration, same run
	dead, survivor := "a", "b"
	moved := online(dead)
	s.start("b")
	coordinatortest.Eventually(t, 30*time.Second, "the peers learning of b", func() bool {
		for _, h := range hosts {
			if st, err := peer.LoadState(h.dir); err != nil || !slices.Contains(st.SiteAddrs, s.listen["b"]) {
				return false
			}
		}
		return true
	})
	t.Logf("%d of %d peers online through %s", moved, n, dead)

	// A session through a grant of "a": stdin held open across a's death.
	j, err := s.admin.Jump(s.ctx(), "web-00", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := j.Open(s.ctx(), execOpen("sh", "-c", "read line; echo got $line"))
	if err != nil {
		t.Fatal(err)
	}
	stdin, stdinW := io.Pipe()
	var out strings.Builder
	execDone := make(chan error, 1)
	go func() {
		_, err := console.Exec(context.Background(), ch, console.ExecIO{Stdin: stdin, Stdout: &out, Stderr: io.Discard})
		execDone <- err
	}()

	killed := time.Now()
	if err := s.coords[dead].Close(); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 2*time.Minute, "every peer online through the survivor", func() bool { return online(survivor) == n })
	took := time.Since(killed)
	bound := time.Duration(float64(moved) / rate * float64(time.Second))
	t.Logf("load average %s", loadAverage())
	t.Logf("failover: %d peers online through %s in %s; N ÷ rate = %s (ratio %.2f; the backoff's first wait is up to 1 s); "+
		"their first registration took %s (failover ÷ first registration %.2f)",
		moved, survivor, took.Round(time.Millisecond), bound, took.Seconds()/bound.Seconds(), enrolled.Round(time.Millisecond), took.Seconds()/enrolled.Seconds())

	// The running session outlived the coordinator that granted it.
	fmt.Fprintln(stdinW, "after")
	stdinW.Close()
	select {
	case err := <-execDone:
		if err != nil || out.String() != "got after\n" {
			t.Errorf("the session opened through %s: %q, %v", dead, out.String(), err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the session opened through %s did not finish", dead)
	}
	ch.Close()

	// The console reaches b (learned from a's answers) and jumps again.
	views, err := s.admin.Peers(s.ctx(), "web-01", false)
	if err != nil || len(views) != 1 || views[0].GetStatus() != "online" {
		t.Fatalf("peer web-01 seen through %s: %v, %v", survivor, views, err)
	}
	got, _, st := run(t, s.admin, "web-01", "echo", "through the survivor")
	if got != "through the survivor\n" || st.GetCode() != 0 {
		t.Fatalf("a jump through %s: %q, %v", survivor, got, st)
	}
}

// loadAverage is /proc/loadavg's first three fields ("?" elsewhere).
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(raw)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}
