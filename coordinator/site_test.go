package coordinator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Started once per process by libp2p dependencies, never stopped.
		goleak.IgnoreTopFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/badger/v4.(*DB).monitorCache"),
		goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	)
}

func TestInitCreatesSiteAndRefusesToOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "site")
	res, err := coordinator.InitSite(coordinator.InitConfig{DataDir: dir, Listen: []string{"/ip4/127.0.0.1/tcp/4830"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "site.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("site key: %v, mode %v", err, st.Mode().Perm())
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %v, want 0700", st.Mode().Perm())
	}
	if res.InviteCode == "" || len(res.LoginAddrs) != 1 || !strings.HasSuffix(res.LoginAddrs[0].String(), "/p2p/"+res.SiteID.String()) {
		t.Fatalf("init result %+v", res)
	}
	keyBefore, _ := os.ReadFile(filepath.Join(dir, "site.key"))
	_, err = coordinator.InitSite(coordinator.InitConfig{DataDir: dir})
	wantCode(t, err, catalog.CodeSiteExists)
	keyAfter, _ := os.ReadFile(filepath.Join(dir, "site.key"))
	if string(keyBefore) != string(keyAfter) {
		t.Fatal("a refused init changed the site key")
	}
	site, err := coordinator.OpenSite(dir)
	if err != nil || site.ID != res.SiteID {
		t.Fatalf("open site: %v %v", site, err)
	}
}

func TestFailedInitLeavesNothing(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "site")
	_, err := coordinator.InitSite(coordinator.InitConfig{DataDir: dir, Listen: []string{"not-a-multiaddr"}})
	wantCode(t, err, catalog.CodeInvalidArgument)
	_, err = coordinator.InitSite(coordinator.InitConfig{DataDir: dir, Relays: []string{"/ip4/198.51.100.1/tcp/4001"}})
	wantCode(t, err, catalog.CodeInvalidArgument)
	_, err = coordinator.InitSite(coordinator.InitConfig{DataDir: dir, AdminName: "Not Valid"})
	wantCode(t, err, catalog.CodeInvalidArgument)
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Fatalf("failed init left %v", entries)
	}
	// In an existing (empty) directory, the directory itself is kept.
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err = coordinator.InitSite(coordinator.InitConfig{DataDir: dir, AdminName: "Not Valid"})
	wantCode(t, err, catalog.CodeInvalidArgument)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("failed init left %v in the existing directory", entries)
	}
	_, err = coordinator.New(coordinator.Config{DataDir: dir})
	wantCode(t, err, catalog.CodeSiteNotFound)
}

func TestMetricsAndHealth(t *testing.T) {
	h := newHarness(t)
	must[*pb.UserDetail](t)(h.admin.WhoAmI(h.ctx()))
	addr := h.coord.HTTPAddr()
	if addr == "" {
		t.Fatal("no HTTP listener")
	}
	var health coordinator.Health
	getJSON(t, "http://"+addr+"/healthz", &health)
	if health.Status != "ok" || health.Site != h.coord.ID().String() || len(health.Addrs) == 0 {
		t.Fatalf("health = %+v", health)
	}
	body := get(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`jumpmesh_coordinator_requests_total{code="ok",request="whoami"}`,
		`jumpmesh_coordinator_requests_total{code="ok",request="login"}`,
		"jumpmesh_coordinator_request_duration_seconds_bucket",
		"jumpmesh_coordinator_peer_sends_pending 0",
		"jumpmesh_coordinator_peer_slow_disconnects_total 0",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(get(t, url)), v); err != nil {
		t.Fatal(err)
	}
}
