package coordinator_test

import (
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

// TestPeerStreamWhileClosingIsToldToRetry is issue 16's failed attempts
// of a reconnect storm: a peer whose session ended while its coordinator
// closed dialled again before the host stopped listening, and its stream
// was reset ("stream reset (remote)", counted failed by the peer). Now it
// is told to come back after a restart's time, and the coordinator counts
// it (PeerEnds.Closing). The one telling it is a stranger (any host can
// open a peer stream): it gets a retry-after and nothing else — no
// enrollment, no turn of the connection rate — and once the coordinator
// serves again the same hello is welcomed at once.
func TestPeerStreamWhileClosingIsToldToRetry(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	key := s.Installer(&pb.InstallerDefaults{}, 0, time.Hour).GetKey()
	hello := mustMarshal(t, &pb.PeerUp{Body: &pb.PeerUp_Hello{Hello: &pb.PeerHello{InstallerKey: key, Info: &pb.PeerInfo{Hostname: "comes-back"}}}})
	h := stranger(t, s)
	known, _ := s.Coord.Service().PeerCounts()

	undo := s.Coord.ClosingForTest()
	var down pb.PeerDown
	if err := sendFrame(s.Ctx(), h, s.Coord.ID(), peerproto.Protocol, hello, &down); err != nil {
		undo()
		t.Fatalf("a peer stream while the coordinator closes: %v (want a retry-after)", err)
	}
	undo()
	if after := down.GetRetry().GetAfterMillis(); after < 1000 {
		t.Fatalf("told %v while closing; want a retry after at least a second", &down)
	}
	if got := s.Coord.PeerEnds().Closing; got != 1 {
		t.Errorf("PeerEnds.Closing = %d, want 1", got)
	}
	if n, _ := s.Coord.Service().PeerCounts(); n != known {
		t.Errorf("%d peers known after the closing answer, want %d: it enrolled", n, known)
	}
	if n := s.Coord.Service().PeerRetries(); n != 0 {
		t.Errorf("%d hellos charged to the connection rate", n)
	}

	down.Reset()
	if err := sendFrame(s.Ctx(), h, s.Coord.ID(), peerproto.Protocol, hello, &down); err != nil {
		t.Fatal(err)
	}
	if down.GetWelcome() == nil {
		t.Fatalf("serving again, the same hello got %v, want a welcome", &down)
	}
}

// TestPeerEndsNameWhyAHelloFailed: a stream that ends before its hello
// and one whose first message is not a hello are counted by reason.
func TestPeerEndsNameWhyAHelloFailed(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	h := stranger(t, s)
	st, err := h.NewStream(s.Ctx(), s.Coord.ID(), peerproto.Protocol)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte{0x05}); err != nil { // the start of a frame, then the end of the stream
		t.Fatal(err)
	}
	_ = st.CloseWrite()
	if _, err := st.Read(make([]byte, 1)); err == nil {
		t.Error("half a hello was answered")
	}
	var down pb.PeerDown
	stats := mustMarshal(t, &pb.PeerUp{Body: &pb.PeerUp_Stats{Stats: &pb.PeerStats{}}})
	_ = sendFrame(s.Ctx(), h, s.Coord.ID(), peerproto.Protocol, stats, &down) // reset unanswered
	defer func() { t.Logf("peer ends: %+v", s.Coord.PeerEnds()) }()
	coordinatortest.Eventually(t, 10*time.Second, "a hello ended and one not a hello counted", func() bool {
		e := s.Coord.PeerEnds()
		return e.HelloEnded == 1 && e.NotHello == 1
	})
}
