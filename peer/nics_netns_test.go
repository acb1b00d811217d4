package peer_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/jumpmesh/jumpmesh/peer"
)

// nicsChildEnv makes TestNicsInNamespaceChild print the host's facts: the
// test binary run inside a namespace by TestNicsInNamespace.
const nicsChildEnv = "JM_PEER_NICS_CHILD"

// TestNicsInNamespace: in a network namespace made by the test, with
// interfaces of known MACs and a default route, the facts a peer reports
// list exactly the up interfaces with a MAC (not loopback, not one that is
// down), their addresses, and the default-route one marked.
func TestNicsInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	ns := netnsName(t, "jmnic")
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "jmn0", "type", "veth", "peer", "name", "jmn1"},
		{"link", "add", "jmn2", "type", "veth", "peer", "name", "jmn3"},
		{"link", "set", "jmn0", "address", "02:4a:4d:00:00:01"},
		{"link", "set", "jmn1", "address", "02:4a:4d:00:00:02"},
		{"link", "set", "jmn2", "address", "02:4a:4d:00:00:03"},
		{"addr", "add", "10.77.0.5/24", "dev", "jmn0"},
		{"addr", "add", "10.78.1.5/16", "dev", "jmn1"},
		{"link", "set", "jmn0", "up"},
		{"link", "set", "jmn1", "up"},
		{"route", "add", "default", "via", "10.77.0.1", "dev", "jmn0"},
	} {
		ipCmd(t, append([]string{"-n", ns}, args...)...)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestNicsInNamespaceChild$")
	cmd.Env = append(os.Environ(), nicsChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var got []struct {
		Name         string   `json:"name"`
		Mac          string   `json:"mac"`
		Addrs        []string `json:"addrs"`
		DefaultRoute bool     `json:"default_route"`
	}
	line := ""
	for _, l := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(l, "NICS "); ok {
			line = rest
		}
	}
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	var lines []string
	for _, n := range got {
		// fe80:: addresses are left out; veths get one when up.
		lines = append(lines, n.Name+" "+n.Mac+" "+strings.Join(n.Addrs, ",")+" "+map[bool]string{true: "default"}[n.DefaultRoute])
	}
	slices.Sort(lines) // the kernel's order is the interfaces' index
	want := []string{
		"jmn0 02:4a:4d:00:00:01 10.77.0.5/24 default",
		"jmn1 02:4a:4d:00:00:02 10.78.1.5/16 ",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("nics:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestNicsInNamespaceChild prints the facts when run by TestNicsInNamespace.
func TestNicsInNamespaceChild(t *testing.T) {
	if os.Getenv(nicsChildEnv) == "" {
		t.Skip("run by TestNicsInNamespace inside its namespace")
	}
	info := peer.SysSource{}.HostInfo("test")
	if info.GetGatewayIp() != "10.77.0.1" {
		t.Errorf("gateway %q; want 10.77.0.1", info.GetGatewayIp())
	}
	type nic struct {
		Name         string   `json:"name"`
		Mac          string   `json:"mac"`
		Addrs        []string `json:"addrs"`
		DefaultRoute bool     `json:"default_route"`
	}
	var out []nic
	for _, n := range info.GetNics() {
		out = append(out, nic{n.GetName(), n.GetMac(), n.GetAddrs(), n.GetDefaultRoute()})
	}
	raw, _ := json.Marshal(out)
	os.Stdout.WriteString("NICS " + string(raw) + "\n")
}

// netnsName is a namespace name of this test run, unique on the machine.
func netnsName(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
