package wake

import (
	"errors"
	"strings"
	"testing"
)

func TestDefaultRouteName(t *testing.T) {
	const table = `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
wlan0	00000000	0101A8C0	0003	0	0	600	00000000	0	0	0
eth0	00000000	0100000A	0003	0	0	100	00000000	0	0	0
eth1	00000000	0100000A	0002	0	0	10	00000000	0	0	0
eth0	0000000A	00000000	0001	0	0	100	00FFFFFF	0	0	0
`
	got, err := defaultRouteName(strings.NewReader(table))
	if err != nil || got != "eth0" {
		t.Fatalf("defaultRouteName = %q, %v; want eth0 (lowest metric among the up ones)", got, err)
	}
	_, err = defaultRouteName(strings.NewReader("Iface\tDestination\neth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"))
	if !errors.Is(err, ErrNoInterface) {
		t.Fatalf("no default route: %v", err)
	}
}
