package coordinator

import (
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

// The lane is announced at each advertised TCP address whose port is a
// listen port (IP or DNS name), with the lane's port; not at QUIC
// addresses nor at a port forwarded from another number.
func TestLaneAnnouncedAtTheAdvertisedAddresses(t *testing.T) {
	listen := []ma.Multiaddr{ma.StringCast("/ip4/0.0.0.0/tcp/4830"), ma.StringCast("/ip4/0.0.0.0/udp/4830/quic-v1"), ma.StringCast("/ip6/::/tcp/4830")}
	l := newMemberLane(listen)
	if got := len(l.listen); got != 2 {
		t.Fatalf("lane listens at %v: want two TCP addresses", l.listen)
	}
	for _, a := range l.listen {
		if p, _ := a.ValueForProtocol(ma.P_TCP); p != "4837" {
			t.Fatalf("lane at %s: want port 4837", a)
		}
	}
	l.listening(l.listen, listen)
	got := l.announce([]ma.Multiaddr{
		ma.StringCast("/ip4/203.0.113.5/tcp/4830"), ma.StringCast("/ip4/203.0.113.5/udp/4830/quic-v1"),
		ma.StringCast("/dns4/coord.example.com/tcp/4830"), ma.StringCast("/ip6/2001:db8::5/tcp/4830"),
		ma.StringCast("/ip4/198.51.100.7/tcp/14830"),
	})
	want := []string{"/ip4/203.0.113.5/tcp/4837", "/dns4/coord.example.com/tcp/4837", "/ip6/2001:db8::5/tcp/4837"}
	if len(got) != len(want) {
		t.Fatalf("announced %v, want %v", got, want)
	}
	for i, a := range got {
		if a.String() != want[i] {
			t.Fatalf("announced %v, want %v", got, want)
		}
	}
	if !l.onLane(ma.StringCast("/ip4/127.0.0.1/tcp/4837")) || l.onLane(ma.StringCast("/ip4/127.0.0.1/tcp/4830")) {
		t.Fatal("onLane mistakes the ports")
	}
}
