package coordinator_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

// The coordinator remembers installer keys whose signature verified
// (keycache.go), and still checks everything else at every enrollment: a
// remembered key of a deleted installer, a remembered key past its window,
// a key signed by another site, and a tampered copy of a remembered key are
// refused as before.
func TestRememberedInstallerKeyIsStillChecked(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	hostN := 0
	hello := func(key string) *pb.PeerDown {
		t.Helper()
		hostN++
		var down pb.PeerDown
		body := mustMarshal(t, &pb.PeerUp{Body: &pb.PeerUp_Hello{Hello: &pb.PeerHello{InstallerKey: key,
			Info: &pb.PeerInfo{Hostname: fmt.Sprint("host-", hostN)}}}})
		if err := sendFrame(s.Ctx(), stranger(t, s), s.Coord.ID(), peerproto.Protocol, body, &down); err != nil {
			t.Fatal(err)
		}
		return &down
	}
	refused := func(what string, down *pb.PeerDown, want catalog.Code) {
		t.Helper()
		if got := catalog.CodeOf(catalog.ErrorFromPB(down.GetError())); down.GetError() == nil || got != want {
			t.Errorf("%s: got %v, want the error %s", what, down, want)
		}
	}

	in := s.Installer(&pb.InstallerDefaults{}, 0, time.Hour)
	for i := range 2 { // the second enrollment uses the remembered key
		if down := hello(in.GetKey()); down.GetWelcome() == nil {
			t.Fatalf("enrollment %d with a valid key: %v", i+1, down)
		}
	}
	refused("a tampered copy of a remembered key", hello(tamperSignature(in.GetKey())), catalog.CodeKeyBadSignature)
	refused("a key of another site", hello(otherSiteKey(t)), catalog.CodeKeyOtherSite)

	if err := s.Admin.DeleteInstaller(s.Ctx(), in.GetId()); err != nil {
		t.Fatal(err)
	}
	refused("a remembered key of a deleted installer", hello(in.GetKey()), catalog.CodeKeyRevoked)

	short := s.Installer(&pb.InstallerDefaults{}, 0, time.Hour)
	if down := hello(short.GetKey()); down.GetWelcome() == nil {
		t.Fatalf("enrollment with a valid key: %v", down)
	}
	s.Clock.Advance(2 * time.Hour)
	refused("a remembered key past its window", hello(short.GetKey()), catalog.CodeKeyExpired)
}

// tamperSignature changes one character of key's signature (not the last,
// whose spare bits strict decoding refuses as bad encoding).
func tamperSignature(key string) string {
	b := []byte(key)
	i := len(b) - 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
