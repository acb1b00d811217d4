package peer_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// These tests attack an install made by root for another user as that
// user would (issue 11, findings 6 and 9): real files, the real `nobody`
// account. They need root and skip without it.

// localUser is the account the peer runs as in these tests.
type localUser struct {
	name     string
	uid, gid int
}

func needRootAndNobody(t *testing.T) localUser {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: installs for another user and acts as that user")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("needs the nobody user")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return localUser{name: u.Username, uid: uid, gid: gid}
}

// run runs argv as u and returns its exit status and output.
func (u localUser) run(t *testing.T, argv ...string) (int, string) {
	t.Helper()
	return u.runWithInput(t, nil, argv...)
}

func (u localUser) runWithInput(t *testing.T, stdin []byte, argv ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatalf("running %v as %s: %v", argv, u.name, err)
	}
	return 0, string(out)
}

// rootInstall installs as root with --user u into a directory u can reach.
func rootInstall(t *testing.T, site *coordinatortest.Site[*console.Client], key string, u localUser) *host {
	t.Helper()
	parent := t.TempDir()
	// t.TempDir's directories are root's 0700: let the user walk down.
	for d := parent; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root := 0
	return install(t, site, key, peer.InstallOptions{Dir: filepath.Join(parent, "jumpmesh"), User: u.name, EUID: &root})
}

func TestRootInstallLeavesTheUserNothingRootRuns(t *testing.T) {
	u := needRootAndNobody(t)
	site := coordinatortest.New(t, console.Login)
	h := rootInstall(t, site, site.Installer(nil, 0, week()).GetKey(), u)

	// What root executes or trusts is root's and not writable by the user.
	for _, name := range []string{".", "jumpmesh", "init-script", "uninstall", "jumpmesh-peer.service", "config.json"} {
		path := filepath.Join(h.dir, name)
		st, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 0 || st.Mode().Perm()&0o022 != 0 {
			t.Errorf("%s: owner %d, mode %v; want root's, writable by root only", name, uid, st.Mode().Perm())
		}
	}
	// The attack: append a line to what root runs.
	for _, name := range []string{"init-script", "jumpmesh", "uninstall", "config.json"} {
		path := filepath.Join(h.dir, name)
		if code, out := u.run(t, "sh", "-c", `echo "touch /tmp/pwned" >> "$0"`, path); code == 0 {
			t.Errorf("%s appended to %s (%s)", u.name, name, out)
		}
	}
	// Nor replace a file of the directory, or add one.
	if code, _ := u.run(t, "mv", filepath.Join(h.dir, "var", "state.json"), filepath.Join(h.dir, "init-script")); code == 0 {
		t.Error("the user replaced init-script")
	}
	if code, _ := u.run(t, "touch", filepath.Join(h.dir, "disabled")); code == 0 {
		t.Error("the user created a file in the install directory")
	}
	// What the daemon writes is the user's.
	for _, name := range []string{"var/state.json", "logs/x", "run/peer.pid"} {
		if code, out := u.run(t, "sh", "-c", `echo 1 >> "$0"`, filepath.Join(h.dir, name)); code != 0 {
			t.Errorf("the peer's user cannot write %s: %s", name, out)
		}
	}
	// The daemon, as the user, reads its config and key.
	if code, out := u.run(t, "cat", filepath.Join(h.dir, "config.json"), filepath.Join(h.dir, "peer.key")); code != 0 {
		t.Errorf("the peer's user cannot read its config and key: %s", out)
	}
}

func TestRootNeverSignalsAPIDTheUserWrote(t *testing.T) {
	u := needRootAndNobody(t)
	site := coordinatortest.New(t, console.Login)
	h := rootInstall(t, site, site.Installer(nil, 0, week()).GetKey(), u)

	// A process of root's that the user would like dead. It is stopped,
	// so a signal sent to it stays pending where the test can see it.
	victim := stoppedVictim(t)
	pidFile := filepath.Join(h.dir, "run", "peer.pid")
	if code, out := u.run(t, "sh", "-c", `echo "$1" > "$0"`, pidFile, strconv.Itoa(victim)); code != 0 {
		t.Fatalf("the peer's user cannot write its pid file: %s", out)
	}

	out, err := exec.Command(filepath.Join(h.dir, "init-script"), "stop").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not this peer") {
		t.Errorf("root's init-script stop with a foreign pid: %v\n%s", err, out)
	}
	out, err = exec.Command(filepath.Join(h.dir, "init-script"), "status").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("init-script status with a foreign pid: %v, want 1 (the peer is not running)\n%s", err, out)
	}
	// Root's Go commands read the same file: status, disable (SIGHUP).
	if st, err := peer.LocalStatus(h.dir); err != nil || st.Running {
		t.Errorf("peer status: %+v, %v; want not running", st, err)
	}
	if err := peer.SetDisabled(h.dir, true, 0); err != nil {
		t.Fatal(err)
	}
	if sig := pendingSignals(t, victim); sig != 0 {
		t.Fatalf("root signalled the process the user named in run/peer.pid (pending signal mask %#x)", sig)
	}
}

// stoppedVictim starts a process of root's and stops it (SIGSTOP): signals
// sent to it later stay pending until the test ends it.
func stoppedVictim(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	pid := cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "the victim stopped", func() bool {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		return err == nil && len(f) > 0 && f[0] == "T"
	})
	return pid
}

// pendingSignals is the mask of signals pending for pid (thread and
// process); it fails the test if pid is gone.
func pendingSignals(t *testing.T, pid int) uint64 {
	t.Helper()
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("the victim is gone: %v", err)
	}
	var mask uint64
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "SigPnd" || k == "ShdPnd" {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			mask |= n
		}
	}
	if strings.Contains(string(raw), "State:\tZ") {
		t.Fatal("the victim died")
	}
	return mask
}

func TestTheUserCannotLiftTheRestriction(t *testing.T) {
	u := needRootAndNobody(t)
	site := coordinatortest.New(t, console.Login)
	key := site.Installer(nil, 0, week()).GetKey()
	// Another peer of the site, while nothing is restricted: its statement
	// is one the attacker might get hold of.
	other := install(t, site, key, peer.InstallOptions{})
	other.start()
	other.waitStatus(other.id(), "online")
	other.stop()
	otherState := readState(t, other.dir)

	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"restrict-local-uninstall": "true"}); err != nil {
		t.Fatal(err)
	}
	h := rootInstall(t, site, key, u)
	h.start()
	h.waitStatus(h.id(), "online")
	coordinatortest.Eventually(t, 10*time.Second, "the restriction reaching the peer", func() bool {
		return coordinatortest.WantNoPanic(func() error { return peer.SetDisabled(h.dir, true, u.uid) }) == catalog.CodePermissionDenied
	})
	h.stop()
	state := filepath.Join(h.dir, "var", "state.json")
	if err := os.Chown(state, u.uid, u.gid); err != nil { // as the daemon, running as the user, leaves it
		t.Fatal(err)
	}
	genuine := readState(t, h.dir)

	attacks := map[string]func(s map[string]any){
		"restriction dropped": func(s map[string]any) { s["restrict_local_uninstall"] = false; delete(s, "local_policy") },
		"statement flipped": func(s map[string]any) {
			raw, _ := base64.StdEncoding.DecodeString(s["local_policy"].(string))
			s["local_policy"] = base64.StdEncoding.EncodeToString(flipRestriction(t, raw))
		},
		"another peer's statement": func(s map[string]any) { s["local_policy"] = otherState["local_policy"] },
		"state emptied":            func(s map[string]any) { clear(s) },
	}
	for name, edit := range attacks {
		t.Run(name, func(t *testing.T) {
			s := maps.Clone(genuine)
			edit(s)
			u.replaceFile(t, state, s)
			// As the peer's user, the real check: SetDisabled with its euid.
			err := peer.SetDisabled(h.dir, true, u.uid)
			coordinatortest.WantCode(t, err, catalog.CodePermissionDenied)
			_, err = peer.Uninstall(context.Background(), h.dir, peer.UninstallOptions{EUID: u.uid})
			coordinatortest.WantCode(t, err, catalog.CodePermissionDenied)
		})
	}
	t.Run("state removed", func(t *testing.T) {
		if code, out := u.run(t, "rm", state); code != 0 {
			t.Fatal(out)
		}
		coordinatortest.WantCode(t, peer.SetDisabled(h.dir, true, u.uid), catalog.CodePermissionDenied)
	})

	// A marker made by hand does not disable a restricted peer; root's does.
	u.replaceFile(t, state, genuine)
	if code, out := u.run(t, "touch", filepath.Join(h.dir, "var", "disabled")); code != 0 {
		t.Fatal(out)
	}
	if peer.IsDisabled(h.dir) {
		t.Fatal("the user's own disabled marker disabled a restricted peer")
	}
	h.start()
	h.waitStatus(h.id(), "online")
	h.d.Reload()
	if err := peer.SetDisabled(h.dir, true, 0); err != nil {
		t.Fatalf("root may disable: %v", err)
	}
	h.d.Reload()
	h.waitStatus(h.id(), "disabled")
}

// readState decodes an install's state.json as the user would edit it.
func readState(t *testing.T, dir string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "var", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// replaceFile has u replace path (in a directory of u's) with v as JSON.
func (u localUser) replaceFile(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if code, out := u.runWithInput(t, raw, "sh", "-c", `cat > "$0.edit" && mv "$0.edit" "$0"`, path); code != 0 {
		t.Fatalf("%s replacing %s: %s", u.name, path, out)
	}
}

// flipRestriction turns the restriction off inside a signed statement,
// keeping its signature.
func flipRestriction(t *testing.T, raw []byte) []byte {
	t.Helper()
	var lp pb.LocalPolicy
	var body pb.LocalPolicyBody
	if err := proto.Unmarshal(raw, &lp); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(lp.GetBody(), &body); err != nil {
		t.Fatal(err)
	}
	body.RestrictLocalUninstall = false
	lp.Body, _ = proto.Marshal(&body)
	out, _ := proto.Marshal(&lp)
	return out
}
