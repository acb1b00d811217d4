package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPlanAddresses(t *testing.T) {
	topo := Topology{
		Networks: []NetworkSpec{
			{Name: "pub", NAT: Public},
			{Name: "home1", NAT: Easy},
			{Name: "home2", NAT: Easy, Subnet: netip.MustParsePrefix("192.168.1.0/24")},
			{Name: "home3", NAT: Easy, Subnet: netip.MustParsePrefix("192.168.1.0/24")},
			{Name: "mobile", NAT: CGNAT},
			{Name: "plant", NAT: Isolated},
			{Name: "tiny", NAT: Hard, Subnet: netip.MustParsePrefix("10.9.9.8/29")},
		},
		Hosts: []HostSpec{
			{Name: "coord", Network: "pub"},
			{Name: "relay", Network: "pub", Addr: netip.MustParseAddr("203.0.113.200")},
			{Name: "a", Network: "home1"},
			{Name: "b", Network: "home1", Addr: netip.MustParseAddr("192.168.2.10")},
			{Name: "c", Network: "home2"},
			{Name: "d", Network: "home3"},
			{Name: "phone", Network: "mobile"},
			{Name: "plc", Network: "plant"},
			{Name: "t", Network: "tiny"},
		},
	}
	p, err := topo.plan()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range p.hosts {
		got[h.spec.Name] = h.addr.String() + " via " + h.gw.String()
	}
	want := map[string]string{
		"coord": "198.51.100.10/24 via 198.51.100.1",
		"relay": "203.0.113.200/24 via 203.0.113.1",
		// b takes .10 explicitly, so a, listed first, is allocated .11
		"a":     "192.168.2.11/24 via 192.168.2.1",
		"b":     "192.168.2.10/24 via 192.168.2.1",
		"c":     "192.168.1.10/24 via 192.168.1.1", // two homes may share a range
		"d":     "192.168.1.10/24 via 192.168.1.1",
		"phone": "192.168.5.10/24 via 192.168.5.1",
		"plc":   "192.168.6.10/24 via invalid IP", // isolated: no gateway
		"t":     "10.9.9.10/29 via 10.9.9.9",
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %s, want %s", name, got[name], w)
		}
	}
	nets := map[string]*netPlan{}
	for _, n := range p.nets {
		nets[n.spec.Name] = n
	}
	if w := nets["home1"].wan.String(); w != "203.0.113.10/24" {
		t.Errorf("home1 WAN %s", w)
	}
	m := nets["mobile"]
	if m.wan.String() != "100.64.5.2/24" || m.carrierLAN.String() != "100.64.5.1/24" || m.carrierWAN.String() != "203.0.113.13/24" {
		t.Errorf("cgnat plan: wan %v carrier LAN %v carrier WAN %v", m.wan, m.carrierLAN, m.carrierWAN)
	}
	if !CGNATRange().Contains(m.wan.Addr()) || !IsLabPublic(m.carrierWAN.Addr()) {
		t.Errorf("cgnat addresses outside their ranges")
	}
	if nets["plant"].wan.IsValid() || nets["plant"].gateway.IsValid() {
		t.Errorf("isolated network has a WAN or gateway")
	}
}

func TestPlanExplicitCollision(t *testing.T) {
	topo := Topology{
		Networks: []NetworkSpec{{Name: "home", NAT: Easy}},
		Hosts: []HostSpec{
			{Name: "a", Network: "home", Addr: netip.MustParseAddr("192.168.1.10")},
			{Name: "b", Network: "home", Addr: netip.MustParseAddr("192.168.1.10")},
		},
	}
	if err := topo.Validate(); !errors.Is(err, ErrTopology) || !strings.Contains(err.Error(), "already belongs") {
		t.Errorf("one explicit address for two hosts: %v", err)
	}
}

func TestValidateRejects(t *testing.T) {
	ok := NetworkSpec{Name: "n", NAT: Easy}
	for name, topo := range map[string]Topology{
		"bad network name":   {Networks: []NetworkSpec{{Name: "Home", NAT: Easy}}},
		"long name":          {Networks: []NetworkSpec{{Name: strings.Repeat("a", 21), NAT: Easy}}},
		"duplicate network":  {Networks: []NetworkSpec{ok, ok}},
		"unknown preset":     {Networks: []NetworkSpec{{Name: "n", NAT: "symmetric"}}},
		"public subnet":      {Networks: []NetworkSpec{{Name: "n", NAT: Easy, Subnet: netip.MustParsePrefix("198.51.100.0/24")}}},
		"huge subnet":        {Networks: []NetworkSpec{{Name: "n", NAT: Easy, Subnet: netip.MustParsePrefix("10.0.0.0/8")}}},
		"unknown network":    {Networks: []NetworkSpec{ok}, Hosts: []HostSpec{{Name: "h", Network: "x"}}},
		"duplicate host":     {Networks: []NetworkSpec{ok}, Hosts: []HostSpec{{Name: "h", Network: "n"}, {Name: "h", Network: "n"}}},
		"addr outside LAN":   {Networks: []NetworkSpec{ok}, Hosts: []HostSpec{{Name: "h", Network: "n", Addr: netip.MustParseAddr("10.0.0.5")}}},
		"router's addr":      {Networks: []NetworkSpec{ok}, Hosts: []HostSpec{{Name: "h", Network: "n", Addr: netip.MustParseAddr("192.168.1.1")}}},
		"internet router":    {Networks: []NetworkSpec{{Name: "p", NAT: Public}}, Hosts: []HostSpec{{Name: "h", Network: "p", Addr: netip.MustParseAddr("198.51.100.1")}}},
		"private public":     {Networks: []NetworkSpec{{Name: "p", NAT: Public}}, Hosts: []HostSpec{{Name: "h", Network: "p", Addr: netip.MustParseAddr("10.0.0.1")}}},
		"router's WAN":       {Networks: []NetworkSpec{{Name: "p", NAT: Public}, ok}, Hosts: []HostSpec{{Name: "h", Network: "p", Addr: netip.MustParseAddr("203.0.113.10")}}},
		"broadcast":          {Networks: []NetworkSpec{ok}, Hosts: []HostSpec{{Name: "h", Network: "n", Addr: netip.MustParseAddr("192.168.1.255")}}},
		"jitter > latency":   {Networks: []NetworkSpec{ok}, Hosts: []HostSpec{{Name: "h", Network: "n", Link: Link{Latency: time.Millisecond, Jitter: 2 * time.Millisecond}}}},
		"loss 100":           {Networks: []NetworkSpec{ok}, Hosts: []HostSpec{{Name: "h", Network: "n", Link: Link{Loss: 100}}}},
		"negative latency":   {Networks: []NetworkSpec{{Name: "n", NAT: Easy, Uplink: Link{Latency: -1}}}},
		"rate below minimum": {Networks: []NetworkSpec{ok}, Hosts: []HostSpec{{Name: "h", Network: "n", Link: Link{Rate: 100}}}},
	} {
		if err := topo.Validate(); !errors.Is(err, ErrTopology) {
			t.Errorf("%s: %v, want ErrTopology", name, err)
		}
	}
}

func TestPublicRanges(t *testing.T) {
	for _, a := range []string{"198.51.100.7", "203.0.113.250", "::ffff:198.51.100.7"} {
		if !IsLabPublic(netip.MustParseAddr(a)) {
			t.Errorf("%s not lab-public", a)
		}
	}
	for _, a := range []string{"192.0.2.1", "8.8.8.8", "100.64.1.1", "192.168.1.1"} {
		if IsLabPublic(netip.MustParseAddr(a)) {
			t.Errorf("%s lab-public", a)
		}
	}
	if len(PublicRanges()) != 2 {
		t.Errorf("ranges %v", PublicRanges())
	}
}

// TestPlanMultiHomed: a host on several networks gets an address on each
// (explicit ones kept), its default route through the first network with a
// gateway, and port forwards resolve to its address on the forwarding
// network.
func TestPlanMultiHomed(t *testing.T) {
	topo := Topology{
		Networks: []NetworkSpec{
			{Name: "dc", NAT: Public},
			{Name: "plant", NAT: Isolated, Subnet: netip.MustParsePrefix("10.20.0.0/24")},
			{Name: "office", NAT: Easy, Forwards: []PortForward{{Port: 4833, Host: "j-1"}, {Port: 4834, Host: "j-2", HostPort: 4833}}},
		},
		Hosts: []HostSpec{
			{Name: "coord", Network: "dc"},
			{Name: "plc", Network: "plant"},
			{Name: "j-1", Network: "plant", More: []Attachment{{Network: "office"}}},
			{Name: "j-2", Network: "plant", Addr: netip.MustParseAddr("10.20.0.10"),
				More: []Attachment{{Network: "office", Addr: netip.MustParseAddr("192.168.3.50"), Link: Link{Latency: time.Millisecond}}}},
			{Name: "edge", Network: "dc", More: []Attachment{{Network: "plant"}}},
		},
	}
	p, err := topo.plan()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range p.hosts {
		s := ""
		for _, i := range h.ifaces {
			s += i.net.spec.Name + "=" + i.addr.String() + " "
		}
		got[h.spec.Name] = s + "via " + h.gw.String() + " on " + strconv.Itoa(h.gwIface)
		if h.addr != h.ifaces[0].addr || h.net != h.ifaces[0].net {
			t.Errorf("%s: addr %v net %s are not the first interface's", h.spec.Name, h.addr, h.net.spec.Name)
		}
	}
	want := map[string]string{
		"coord": "dc=198.51.100.10/24 via 198.51.100.1 on 0",
		"plc":   "plant=10.20.0.11/24 via invalid IP on 0", // .10 is j-2's, explicitly
		"j-1":   "plant=10.20.0.12/24 office=192.168.3.10/24 via 192.168.3.1 on 1",
		"j-2":   "plant=10.20.0.10/24 office=192.168.3.50/24 via 192.168.3.1 on 1",
		"edge":  "dc=198.51.100.11/24 plant=10.20.0.13/24 via 198.51.100.1 on 0",
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %s, want %s", name, got[name], w)
		}
	}
	if got := p.hosts[3].ifaces[1].link.Latency; got != time.Millisecond {
		t.Errorf("j-2's office link: latency %v", got)
	}
	var fw []string
	for _, f := range p.nets[2].forwards {
		fw = append(fw, fmt.Sprintf("%d→%v:%d", f.port, f.addr, f.hostPort))
	}
	if w := "4833→192.168.3.10:4833 4834→192.168.3.50:4833"; strings.Join(fw, " ") != w {
		t.Errorf("forwards %v, want %s", fw, w)
	}
}

func TestValidateRejectsMultiHoming(t *testing.T) {
	nets := []NetworkSpec{{Name: "p", NAT: Public}, {Name: "q", NAT: Public}, {Name: "a", NAT: Easy}, {Name: "b", NAT: Isolated},
		{Name: "c", NAT: Easy, Subnet: netip.MustParsePrefix("192.168.3.0/24")}, {Name: "d", NAT: Easy}, {Name: "e", NAT: CGNAT}}
	host := func(more ...string) []HostSpec {
		h := HostSpec{Name: "h", Network: "a"}
		for _, m := range more {
			h.More = append(h.More, Attachment{Network: m})
		}
		return []HostSpec{h, {Name: "x", Network: "b"}}
	}
	fwd := func(on string, f PortForward) []NetworkSpec {
		out := append([]NetworkSpec(nil), nets...)
		for i := range out {
			if out[i].Name == on {
				out[i].Forwards = append(out[i].Forwards, f)
			}
		}
		return out
	}
	for name, tc := range map[string]struct {
		topo Topology
		want string
	}{
		"unknown network":     {Topology{Networks: nets, Hosts: host("zz")}, "unknown network"},
		"same network twice":  {Topology{Networks: nets, Hosts: host("b", "b")}, "twice"},
		"first network again": {Topology{Networks: nets, Hosts: host("a")}, "twice"},
		"overlapping subnets": {Topology{Networks: nets, Hosts: host("c")}, "overlaps"}, // a is 192.168.3.0/24 too
		"two public":          {Topology{Networks: nets, Hosts: append(host(), HostSpec{Name: "y", Network: "p", More: []Attachment{{Network: "q"}}})}, "more than one public"},
		"too many":            {Topology{Networks: nets, Hosts: host("b", "d", "e", "p")}, "more than 4 networks"},
		"bad link":            {Topology{Networks: nets, Hosts: []HostSpec{{Name: "h", Network: "a", More: []Attachment{{Network: "b", Link: Link{Loss: 100}}}}}}, "link to b"},
		"forward on isolated": {Topology{Networks: fwd("b", PortForward{Port: 1, Host: "x"}), Hosts: host()}, "port forwards need"},
		"forward on cgnat":    {Topology{Networks: fwd("e", PortForward{Port: 1, Host: "x"}), Hosts: host()}, "port forwards need"},
		"forward to nobody":   {Topology{Networks: fwd("a", PortForward{Port: 1, Host: "nobody"}), Hosts: host()}, "unknown host"},
		"forward elsewhere":   {Topology{Networks: fwd("a", PortForward{Port: 1, Host: "x"}), Hosts: host()}, "not on it"},
		"forward no port":     {Topology{Networks: fwd("a", PortForward{Host: "h"}), Hosts: host()}, "without a port"},
		"forward twice":       {Topology{Networks: fwd("a", PortForward{Port: 7, Host: "h"}), Hosts: host()}, ""},
	} {
		if name == "forward twice" {
			tc.topo.Networks[2].Forwards = append(tc.topo.Networks[2].Forwards, PortForward{Port: 7, Host: "h", HostPort: 8})
			tc.want = "forwarded twice"
		}
		if err := tc.topo.Validate(); !errors.Is(err, ErrTopology) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrTopology with %q", name, err, tc.want)
		}
	}
}
