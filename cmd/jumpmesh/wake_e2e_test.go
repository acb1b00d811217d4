package main

import (
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestWakeThroughTheCLI: show lists the host's NICs (a real peer's
// facts); wake refuses an online peer, a malformed password and, once the
// peer stopped, a peer with no neighbour, each with its code in --json.
func TestWakeThroughTheCLI(t *testing.T) {
	s := newJumpSite(t)
	var v peerView
	ok(t, s.admin, &v, "show", "web-01", "--json")
	if len(v.NICs) == 0 || v.NICs[0].MAC == "" || v.NICs[0].Name == "" {
		t.Fatalf("show lists no NIC: %+v", v.NICs)
	}
	if r := jm(t, s.admin, "show", "web-01"); r.code != 0 || !strings.Contains(r.stdout, "NICs:") || !strings.Contains(r.stdout, v.NICs[0].MAC) {
		t.Fatalf("show: %d %q", r.code, r.stdout)
	}
	failCode(t, s.admin, "wake_not_needed", "wake", "web-01")
	failCode(t, s.admin, "invalid_argument", "wake", "web-01", "--password", "01-23-45")
	if r := jm(t, s.admin, "wake", "web-01", "--wait", "-1s"); r.code != 2 {
		t.Fatalf("--wait -1s: exit %d %q", r.code, r.stderr)
	}
	if r := jm(t, s.admin, "jump", "web-01", "--wake-timeout", "0s", "--", "true"); r.code != 2 {
		t.Fatalf("--wake-timeout 0s: exit %d %q", r.code, r.stderr)
	}

	if code, out := initScript(t, s.hostDir, "stop"); code != 0 {
		t.Fatalf("stop: %d %s", code, out)
	}
	waitFor(t, 30*time.Second, "web-01 offline", func() bool {
		r := jm(t, s.admin, "ls", "name:web-01", "status:offline", "--json")
		return r.code == 0 && strings.Contains(r.stdout, `"offline"`)
	})
	failCode(t, s.admin, "wake_no_neighbor", "wake", "web-01")
	if r := jm(t, s.admin, "jump", "web-01", "--wake", "--", "true"); r.code != exitJumpFailed || !strings.Contains(r.stderr, "No online peer shares") {
		t.Fatalf("jump --wake with no neighbour: exit %d %q", r.code, r.stderr)
	}
	var audit []struct{ Kind, Code string }
	ok(t, s.admin, &audit, "audit", "--kind", "wake", "--json")
	// The malformed password never left the console.
	if len(audit) != 3 || audit[0].Code != "wake_not_needed" || audit[1].Code != "wake_no_neighbor" || audit[2].Code != "wake_no_neighbor" {
		t.Fatalf("wake audit: %+v", audit)
	}
}

// TestWakeOutput: what wake prints for a response: each waker and what
// it sent (or why not), the coordinator's own sends, the next attempt.
func TestWakeOutput(t *testing.T) {
	p := &pb.PeerView{Peer: &pb.Peer{Id: []byte("x"), Settings: &pb.InstallerDefaults{Name: "web-01"}}}
	r := &pb.WakeResponse{Method: "wol", NextAttemptUnixMillis: time.Date(2026, 12, 2, 10, 0, 30, 0, time.UTC).UnixMilli(),
		Wakers: []*pb.Waker{
			{Name: "web-02", Kind: "peer", Id: []byte("y"), Sent: []string{"eth0 udp 255.255.255.255:9", "eth0 ether 0x0842"}},
			{Name: "plant-a", Kind: "jumpoint", Error: catalog.ErrorToPB(catalog.Errorf(catalog.CodeWakeFailed, "(no interface)"))},
		}}
	v := newWakeView(p, r)
	var b strings.Builder
	printWake(&b, v)
	out := b.String()
	for _, want := range []string{"Waking web-01", "Wake-on-LAN through its neighbours", "web-02", "eth0 udp 255.255.255.255:9, eth0 ether 0x0842",
		"plant-a", "jumpoint", "(no interface)", "Next attempt allowed from 10:00:30 UTC."} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if v.Wakers[1].Error == "" || v.Wakers[0].ID == "" || len(v.Wakers[1].Sent) != 0 || v.Wakers[1].Sent == nil {
		t.Errorf("json view: %+v", v.Wakers)
	}
}
