package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sshd is a real OpenSSH server on a loopback port, with its own host key
// and a client key authorised for the current user.
type sshd struct {
	port    string
	userKey string
	user    string
	cmd     *exec.Cmd
}

const sshdPath = "/usr/sbin/sshd"

// startSSHD runs OpenSSH's sshd for the test, or skips when it is not
// installed (make test installs it when root).
func startSSHD(t testing.TB) *sshd {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Skipf("OpenSSH server not installed (%s); `make deps` installs it as root", sshdPath)
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("OpenSSH client not installed")
	}
	dir := t.TempDir()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"host", "user"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "user.pub"))
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600)
	s := &sshd{port: freeTCPPort(t), userKey: filepath.Join(dir, "user"), user: me.Username}
	config := fmt.Sprintf(`Port %s
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin yes
PidFile %s
`, s.port, filepath.Join(dir, "host"), filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "sshd.pid"))
	os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(config), 0o600)
	os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	s.cmd = exec.Command(sshdPath, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	stderr, _ := s.cmd.StderrPipe()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Server listening") {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("sshd did not start")
	}
	return s
}

// sshArgs are the client's arguments to run cmd through port.
func (s *sshd) sshArgs(port string, cmd ...string) []string {
	return append([]string{"-p", port, "-i", s.userKey, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR", s.user + "@127.0.0.1"}, cmd...)
}

func TestForwardCarriesAnOpenSSHSession(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (e2e_test.go)
	sd := startSSHD(t)
	s := newJumpSite(t)
	lport := freeTCPPort(t)
	fw := exec.Command(binary, "forward", "web-01", lport+":127.0.0.1:"+sd.port)
	fw.Env = append(os.Environ(), "JUMPMESH_HOME="+s.admin)
	var fwOut syncBuffer
	fw.Stdout, fw.Stderr = &fwOut, &fwOut
	if err := fw.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { fw.Process.Signal(os.Interrupt); fw.Wait() }()
	waitFor(t, 20*time.Second, "the forward listening", func() bool { return strings.Contains(fwOut.String(), "forwarding") })
	out, err := exec.Command("ssh", sd.sshArgs(lport, "echo", "through-jumpmesh", "&&", "head", "-c", "1000000", "/dev/zero", "|", "wc", "-c")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "through-jumpmesh") || !strings.Contains(string(out), "1000000") {
		t.Fatalf("ssh through the forward: %v\n%s\nforward: %s", err, out, fwOut.String())
	}
}
