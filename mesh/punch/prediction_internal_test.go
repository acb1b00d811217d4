package punch

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// TestPredictionOff: a peer behind a sequential NAT (two trusted
// observations a port apart) whose site turned nat-prediction off offers
// only the mapping its observers saw — no predicted port — and makes no
// fresh observation before a punch; turned on again, it predicts.
func TestPredictionOff(t *testing.T) {
	coordinator, relay := peer.ID("coordinator"), peer.ID("relay")
	h := newTestHost(t)
	var on atomic.Bool
	p, err := Start(h, func(id peer.ID) bool { return id == coordinator || id == relay }, nil, WithPrediction(on.Load))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	from := ma.StringCast("/ip4/127.0.0.1/tcp/" + tcpListenPort(t, h))
	now := time.Now()
	for i, id := range []peer.ID{coordinator, relay} {
		p.observe(event.EvtPeerIdentificationCompleted{
			Peer: id,
			Conn: fakeConn{local: from, remote: ma.StringCast("/ip4/198.51.100." + strconv.Itoa(10+i) + "/tcp/4830"),
				opened: now.Add(time.Duration(i) * 100 * time.Millisecond)},
			ObservedAddr: ma.StringCast("/ip4/5.6.7.8/tcp/" + strconv.Itoa(30000+i)),
		})
	}
	if !p.sequential() {
		t.Fatalf("flows %v: want them read as a sequential NAT", p.flows)
	}
	// Off: the latest observation, as before prediction.
	if got := p.publicAddrs(); len(got) != 1 || !got[0].Equal(ma.StringCast("/ip4/5.6.7.8/tcp/30001")) {
		t.Fatalf("prediction off: offered %v, want only the observed /ip4/5.6.7.8/tcp/30001", got)
	}
	if p.needFresh() {
		t.Error("prediction off: a punch would observe afresh first")
	}
	// On: the next ports, not the observed one.
	on.Store(true)
	got := p.publicAddrs()
	if len(got) != punchCandidates || !got[0].Equal(ma.StringCast("/ip4/5.6.7.8/tcp/30002")) {
		t.Fatalf("prediction on: offered %v, want %d ports from 30002", got, punchCandidates)
	}
	if !p.needFresh() {
		t.Error("prediction on: a punch through a sequential NAT would not observe afresh first")
	}
}
