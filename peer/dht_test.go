package peer_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestJumpWithAStaleAddressFindsThePeerThroughTheDHT: the grant's addresses
// for the peer are stale (nothing listens there any more) and it names no
// relay; the console asks the site's DHT, where the running peer is known
// through its connection to the coordinator, and the jump works.
func TestJumpWithAStaleAddressFindsThePeerThroughTheDHT(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "moved"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := site.Admin.Jump(ctx, "moved", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	j.Addrs = []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", coordinatortest.FreePort(t, "tcp")))}
	j.Relays = nil
	ch, err := j.Open(ctx, execOpen("echo", "found"))
	if err != nil {
		t.Fatalf("open with a stale address: %v", err)
	}
	defer ch.Close()
	var out bytes.Buffer
	st, err := console.Exec(ctx, ch, console.ExecIO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out})
	if err != nil || st.GetCode() != 0 || out.String() != "found\n" {
		t.Fatalf("exec: %v, status %v, output %q", err, st, out.String())
	}
	if path := j.Path(); path.Kind != console.PathDirect {
		t.Fatalf("path %s, want direct", path)
	}
}
