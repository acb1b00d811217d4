package coordinator_test

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestCloseRefusesNewConnectionsBeforeEndingOthers: by the time a closing
// coordinator ends its connections, its ports refuse new ones. A peer whose
// session ends redials at once; a port still open took its connection and
// then reset it as the listener closed (a failed attempt, which backs the
// daemon off), where a refused one is the restart the daemon expects.
func TestCloseRefusesNewConnectionsBeforeEndingOthers(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	if _, err := s.Admin.Call(s.Ctx(), &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}}); err != nil {
		t.Fatal(err)
	}
	info, err := lpeer.AddrInfoFromString(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	tcpAddr := coordinatortest.TCPNetAddr(t, info.Addrs)
	closing := s.Coord
	hooked := false
	undo := coordinator.SetClosingHookForTest(func(c *coordinator.Coordinator) {
		if c != closing {
			return
		}
		hooked = true
		if got := c.Host().Network().Connectedness(s.Admin.ID()); got != network.Connected {
			t.Errorf("the console's connection is %v before the host closes, want it still connected", got)
		}
		for _, a := range []net.Addr{tcpAddr, coordinatortest.TCPNetAddr(t, c.LaneAddrs())} {
			conn, err := net.DialTimeout("tcp", a.String(), 5*time.Second)
			if err == nil {
				conn.Close()
				t.Errorf("a new connection to %s was accepted while the coordinator closed its others", a)
				continue
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("a new connection to %s: %v, want it refused", a, err)
			}
		}
	})
	defer undo()
	s.Stop()
	if !hooked {
		t.Fatal("Close did not run the hook")
	}
}
