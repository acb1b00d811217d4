package jumpoint

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// towardChildEnv makes TestTowardTargetChild run its checks: the test
// binary run inside a namespace by TestTowardTarget.
const towardChildEnv = "JM_JUMPOINT_TOWARD_CHILD"

// TestTowardTarget: in a network namespace made by the test, with one
// interface on the isolated network (10.99.0.0/24) and another carrying
// the default route, a jumpoint's magic packets go out on the isolated
// network's interface: the one holding a target IP, else the one toward the
// target's gateway, and never the default route's.
func TestTowardTarget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	ns := "jmtoward-" + hex.EncodeToString(b)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range [][]string{
		{"link", "add", "jmw0", "type", "veth", "peer", "name", "jmw1"},
		{"addr", "add", "10.99.0.1/24", "dev", "jmw0"},
		{"addr", "add", "172.31.5.2/24", "dev", "jmw1"},
		{"link", "set", "jmw0", "up"},
		{"link", "set", "jmw1", "up"},
		{"route", "add", "default", "via", "172.31.5.1", "dev", "jmw1"},
	} {
		run(append([]string{"-n", ns}, args...)...)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestTowardTargetChild$", "-test.v")
	cmd.Env = append(os.Environ(), towardChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestTowardTargetChild") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// TestTowardTargetChild runs inside TestTowardTarget's namespace.
func TestTowardTargetChild(t *testing.T) {
	if os.Getenv(towardChildEnv) == "" {
		t.Skip("run by TestTowardTarget inside its namespace")
	}
	for _, tc := range []struct {
		name string
		body *pb.WakeBody
		want string // "" = an error
	}{
		{"a target IP on the isolated network", &pb.WakeBody{TargetIps: []string{"192.168.7.7", "10.99.0.7"}, GatewayIp: "172.31.5.1"}, "jmw0"},
		{"a target address in CIDR form", &pb.WakeBody{TargetIps: []string{"10.99.0.7/24"}}, "jmw0"},
		{"no target IP faces it: the gateway's interface", &pb.WakeBody{TargetIps: []string{"10.50.0.1"}, GatewayIp: "10.99.0.254"}, "jmw0"},
		{"nothing faces the target: not the default route", &pb.WakeBody{TargetIps: []string{"10.50.0.1"}}, ""},
		{"no addresses at all", &pb.WakeBody{}, ""},
	} {
		ifi, err := towardTarget(tc.body)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%s: interface %s; want an error", tc.name, ifi.Name)
		case tc.want != "" && err != nil:
			t.Errorf("%s: %v; want %s", tc.name, err, tc.want)
		case tc.want != "" && ifi.Name != tc.want:
			t.Errorf("%s: interface %s; want %s", tc.name, ifi.Name, tc.want)
		}
	}
}
