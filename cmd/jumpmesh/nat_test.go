package main

import (
	"testing"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func TestNATText(t *testing.T) {
	for _, tc := range []struct {
		r    *pb.NatReport
		want string
	}{
		{nil, "not reported"},
		{&pb.NatReport{Tcp: "endpoint-independent", Udp: "endpoint-independent", PortPreserving: true, Observers: 2},
			"tcp endpoint-independent (port-preserving), udp endpoint-independent, seen by 2 observers"},
		{&pb.NatReport{Tcp: "random", Udp: "blocked", Observers: 2},
			"tcp endpoint-dependent (random ports), udp blocked, seen by 2 observers"},
		{&pb.NatReport{Tcp: "sequential", Udp: "unknown", Observers: 1},
			"tcp endpoint-dependent (sequential ports), udp unknown, seen by 1 observer"},
		{&pb.NatReport{Tcp: "endpoint-independent", Udp: "unknown", PortPreserving: true, NoNat: true, Observers: 2},
			"tcp endpoint-independent (no NAT: the peer's own address), udp unknown, seen by 2 observers"},
		{&pb.NatReport{Tcp: "endpoint-independent", Udp: "endpoint-independent", PortPreserving: true, Observers: 2, Hairpinning: pb.Hairpinning_HAIRPINNING_NO},
			"tcp endpoint-independent (port-preserving), udp endpoint-independent, hairpinning: no, seen by 2 observers"},
		{&pb.NatReport{Tcp: "random", Udp: "random", Observers: 2, Hairpinning: pb.Hairpinning_HAIRPINNING_YES},
			"tcp endpoint-dependent (random ports), udp endpoint-dependent (random ports), hairpinning: yes, seen by 2 observers"},
		{&pb.NatReport{Tcp: "random", Udp: "unknown", Observers: 2, Hairpinning: pb.Hairpinning(9)},
			"tcp endpoint-dependent (random ports), udp unknown, seen by 2 observers"},
	} {
		if got := natText(newNATView(tc.r)); got != tc.want {
			t.Errorf("natText(%v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}
