package console_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/jumpoint"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestForwardViaJumpoint is an agentless target end to end: a real
// coordinator, a jumpoint daemon (jumpoint.New) and a web server on
// loopback that runs no peer. An administrator allows the web server's
// port; a technician of the allowed jump group forwards a local port
// through the jumpoint and fetches the page; the tunnel is audited with
// its bytes; a target outside the list is refused by the coordinator, and
// by the jumpoint once the list no longer holds the target (which also
// ends the open tunnel to it); a technician outside the groups is refused.
func TestForwardViaJumpoint(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "hello from the plant floor")
	}))
	defer web.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "secret") }))
	defer other.Close()
	target, outside := web.Listener.Addr().String(), other.Listener.Addr().String()

	j, err := jumpoint.New(ctx, jumpoint.Config{DataDir: filepath.Join(t.TempDir(), "plant-a"), Coordinator: site.Addr,
		Invite: site.Invite("plant-a", pb.Role_ROLE_JUMPOINT), Listen: []string{"/ip4/127.0.0.1/tcp/0"},
		HTTPAddr: "off", Refresh: 100 * time.Millisecond, Clock: site.Clock})
	if err != nil {
		t.Fatalf("starting the jumpoint: %v", err)
	}
	defer j.Close()

	tom, tess := site.User("tom", pb.Role_ROLE_TECHNICIAN), site.User("tess", pb.Role_ROLE_TECHNICIAN)
	if _, err := site.Admin.CreateGroup(ctx, "plant", "Plant", []*pb.GroupMember{{User: "tom", Role: pb.MemberRole_MEMBER_ROLE_MEMBER}}); err != nil {
		t.Fatal(err)
	}
	if _, err := site.Admin.SetJumpoint(ctx, &pb.JumpointSetRequest{Name: "plant-a", SetAllow: true, Allow: []string{target},
		SetGroups: true, Groups: []string{"plant"}}); err != nil {
		t.Fatal(err)
	}

	via, err := tom.JumpVia(ctx, "plant-a", target)
	if err != nil {
		t.Fatalf("jump --via plant-a %s: %v", target, err)
	}
	if via.Jumpoint != "plant-a" || via.JumpointID() != j.ID() {
		t.Errorf("via %s (%s), want plant-a (%s)", via.Jumpoint, via.JumpointID(), j.ID())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fwd := &console.ViaForwarder{Via: via}
	fwd.OnError = func(_ net.Conn, err error) { t.Logf("forward: %v", err) }
	serveCtx, stopServe := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() { defer close(served); fwd.Serve(serveCtx, ln) }()
	defer func() { stopServe(); <-served }()

	// The jumpoint learns the allow list at its next refresh (100 ms).
	var body string
	coordinatortest.Eventually(t, 10*time.Second, "the page through the jumpoint", func() bool {
		body, err = get(ctx, "http://"+ln.Addr().String())
		return err == nil
	})
	if body != "hello from the plant floor" {
		t.Fatalf("page %q", body)
	}

	// The tunnel is audited with its bytes, once the jumpoint reports it.
	coordinatortest.Eventually(t, 10*time.Second, "the tunnel in the audit log", func() bool {
		events, err := site.Admin.Audit(ctx, &pb.AuditRequest{Kind: coordinator.AuditTunnel})
		if err != nil {
			return false
		}
		for _, e := range events {
			if e.GetUser() == "tom" && e.GetTarget() == target && e.GetJumpoint() == "plant-a" && e.GetBytesIn() > 0 &&
				e.GetBytesOut() > int64Len("hello from the plant floor") && e.GetEndedUnixNano() >= e.GetStartedUnixNano() {
				return true
			}
		}
		return false
	})

	// Outside the list: the coordinator refuses to grant.
	_, err = tom.JumpVia(ctx, "plant-a", outside)
	if catalog.CodeOf(err) != catalog.CodePermissionDenied || !strings.Contains(err.Error(), target) {
		t.Errorf("jump --via to %s outside the list: %v, want permission_denied naming the list", outside, err)
	}
	// Outside the groups.
	_, err = tess.JumpVia(ctx, "plant-a", target)
	if catalog.CodeOf(err) != catalog.CodePermissionDenied {
		t.Errorf("tess, in no group of plant-a: %v, want permission_denied", err)
	}

	// A connection held open across the change below.
	held, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := io.WriteString(held, "GET / HTTP/1.1\r\nHost: plant\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 64)
	if n, err := held.Read(first); err != nil || !strings.HasPrefix(string(first[:n]), "HTTP/1.1 200") {
		t.Fatalf("held connection: %q, %v", first[:n], err)
	}

	// The list changes under a running forward: the jumpoint ends the
	// open tunnel and refuses the next one, its grant still valid.
	if _, err := site.Admin.SetJumpoint(ctx, &pb.JumpointSetRequest{Name: "plant-a", SetAllow: true, Allow: []string{outside}}); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "the jumpoint refusing a target no longer listed", func() bool {
		c, err := via.Dial(ctx)
		if err == nil {
			c.Close()
			return false
		}
		return catalog.CodeOf(err) == catalog.CodePermissionDenied && strings.Contains(err.Error(), "allow list")
	})
	_ = held.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, held); err != nil {
		t.Errorf("the tunnel to a target no longer listed was not ended: %v", err)
	}
	if _, err := get(ctx, "http://"+ln.Addr().String()); err == nil {
		t.Error("the forward still fetches the page after the target left the list")
	}
}

func int64Len(s string) uint64 { return uint64(len(s)) }

// get fetches url without keep-alive (each fetch is one tunnel).
func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
