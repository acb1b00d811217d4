package peer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/sys/unix"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

// RootWarning is the seeds' warning for installing as root without --user.
const RootWarning = "Installing the peer in the root context is not recommended. " +
	"Use --user <username> to name the user the peer process runs as."

// InstallOptions are `jumpmesh peer install`'s flags.
type InstallOptions struct {
	Key string
	Dir string
	// Overrides and OverrideFields are the --jc-* flags given.
	Overrides      Overrides
	OverrideFields installerkey.Field
	// PublicSiteAddress (--jc-public-site-address) replaces the key's
	// coordinator addresses: a multiaddr ending in /p2p/<site> or without it.
	PublicSiteAddress string
	// User runs the peer and owns the directory. Required when installing as root.
	User string
	// Binary is the jumpmesh executable to copy (default: this one).
	Binary string
	Clock  mesh.Clock
	// EUID is the installing user's effective ID (default: os.Geteuid()).
	EUID *int
}

// Installed describes a finished install.
type Installed struct {
	Dir    string
	PeerID peer.ID
	Site   peer.ID
	Config *Config
}

// Install verifies the key offline and creates the install directory. On
// any error nothing is left behind.
func Install(opts InstallOptions) (_ *Installed, err error) {
	now := clockOr(opts.Clock).Now()
	key, err := installerkey.Verify(opts.Key, installerkey.VerifyOptions{Now: now})
	if err != nil {
		return nil, err
	}
	if err := checkOverrides(key, opts); err != nil {
		return nil, err
	}
	owner, err := checkUser(opts)
	if err != nil {
		return nil, err
	}
	dir, err := checkInstallDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, installDirMode); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	cfg := newConfig(key, opts, now)
	runUID := os.Geteuid()
	if owner != nil {
		runUID = owner.uid
	}
	id, err := populate(dir, cfg, opts.Binary, runUID)
	if err != nil {
		return nil, err
	}
	if owner != nil {
		if err := handOver(dir, *owner); err != nil {
			return nil, err
		}
	}
	return &Installed{Dir: dir, PeerID: id, Site: key.Site, Config: cfg}, nil
}

func clockOr(c mesh.Clock) mesh.Clock {
	if c == nil {
		return mesh.SystemClock{}
	}
	return c
}

// checkOverrides refuses --jc-* flags for fields the installer does not let
// the host override, and checks their values as the coordinator would.
func checkOverrides(key *installerkey.Key, opts InstallOptions) error {
	fields := opts.OverrideFields
	if opts.PublicSiteAddress != "" {
		fields |= installerkey.FieldPublicSiteAddress
	}
	if denied := fields &^ installerkey.Field(key.Body.GetOverridable()); denied != 0 {
		flags := make([]string, 0, len(denied.Names()))
		for _, n := range denied.Names() {
			flags = append(flags, "--jc-"+n)
		}
		return catalog.Errorf(catalog.CodeOverrideNotAllowed, "(%v; this installer allows: %v)", flags, installerkey.Field(key.Body.GetOverridable()).Names())
	}
	o := opts.Overrides
	if fields&installerkey.FieldGroup != 0 {
		if _, _, err := words.ParseGroupRef(o.Group); err != nil {
			return err
		}
	}
	if n := len([]rune(o.Name)); n > 128 {
		return catalog.Errorf(catalog.CodeInvalidArgument, "--jc-name is at most 128 characters (got %d).", n)
	}
	if m := o.MaxOfflineMinutes; m != 0 && (m < 5 || m > 525600) {
		return catalog.Errorf(catalog.CodeOutOfRange, "--jc-max-offline-minutes is 5 to 525600 (got %d).", m)
	}
	if opts.PublicSiteAddress != "" {
		if _, err := mesh.ParseMultiaddrs([]string{opts.PublicSiteAddress}); err != nil {
			return err
		}
	}
	return nil
}

type owner struct{ uid, gid int }

// checkUser applies the seeds' rule: not as root without --user; the user
// must exist, and a non-root installer can only install for itself.
func checkUser(opts InstallOptions) (*owner, error) {
	euid := os.Geteuid()
	if opts.EUID != nil {
		euid = *opts.EUID
	}
	if opts.User == "" {
		if euid == 0 {
			return nil, catalog.Errorf(catalog.CodeInvalidArgument, RootWarning)
		}
		return nil, nil
	}
	u, err := user.Lookup(opts.User)
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "--user %s: no such user on this host.", opts.User)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if euid != 0 {
		if uid != euid {
			return nil, catalog.Errorf(catalog.CodePermissionDenied, "(only root can install for another user; run as %s, or as root with --user %s)", opts.User, opts.User)
		}
		return nil, nil
	}
	return &owner{uid: uid, gid: gid}, nil
}

// checkInstallDir wants an absolute path that does not exist, in a writable
// directory.
func checkInstallDir(dir string) (string, error) {
	if dir == "" {
		return "", catalog.Errorf(catalog.CodeInvalidArgument, "--install-dir is required.")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if _, err := os.Lstat(dir); err == nil {
		return "", catalog.Errorf(catalog.CodeInvalidArgument, "--install-dir %s already exists; choose a new directory.", dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	parent := filepath.Dir(dir)
	if st, err := os.Stat(parent); err != nil || !st.IsDir() {
		return "", catalog.Errorf(catalog.CodeInvalidArgument, "The parent of --install-dir, %s, is not an existing directory.", parent)
	}
	if err := unix.Access(parent, unix.W_OK); err != nil {
		return "", catalog.Errorf(catalog.CodePermissionDenied, "(cannot write in %s)", parent)
	}
	return dir, nil
}

func newConfig(key *installerkey.Key, opts InstallOptions, now time.Time) *Config {
	c := &Config{Version: configVersion, InstallerKey: key.Raw, InstallerID: key.Body.GetInstallerId(), Site: key.Site.String(),
		PublicSiteAddress: opts.PublicSiteAddress, Overrides: opts.Overrides, OverrideFields: uint32(opts.OverrideFields),
		FirstContactBy: key.NotAfter(), InstalledAt: now.UTC(), User: opts.User,
		MaxOfflineMinutes: key.Body.GetDefaults().GetMaxOfflineMinutes()}
	for _, a := range key.SiteAddrs {
		c.SiteAddrs = append(c.SiteAddrs, a.String())
	}
	for _, a := range key.Relays {
		c.Relays = append(c.Relays, a.String())
	}
	for _, j := range key.Jumpoints {
		jc := JumpointConfig{ID: j.ID.String(), Name: j.Name, PeerPort: j.PeerPort}
		for _, a := range j.Addrs {
			jc.Addrs = append(jc.Addrs, a.String())
		}
		c.Jumpoints = append(c.Jumpoints, jc)
	}
	if len(c.Jumpoints) == 0 && key.Jumpoint != "" {
		c.Jumpoints = []JumpointConfig{{ID: key.Jumpoint.String()}}
	}
	if opts.OverrideFields&installerkey.FieldMaxOfflineMinutes != 0 {
		c.MaxOfflineMinutes = opts.Overrides.MaxOfflineMinutes
		if opts.Overrides.Ephemeral {
			c.MaxOfflineMinutes = ephemeralMinutes
		}
	}
	return c
}

// ephemeralMinutes is what --jc-ephemeral means (seeds: 5 minutes).
const ephemeralMinutes = 5

// populate writes everything the install directory holds. runUID is the
// user the peer runs as, which the init-script checks before signalling.
func populate(dir string, cfg *Config, binary string, runUID int) (peer.ID, error) {
	for _, d := range []string{logDir, runDir, varDir} {
		if err := os.Mkdir(filepath.Join(dir, d), installDirMode); err != nil {
			return "", err
		}
	}
	if err := copyBinary(binary, filepath.Join(dir, binaryFile)); err != nil {
		return "", err
	}
	priv, err := mesh.CreateKeyFile(filepath.Join(dir, keyFile))
	if err != nil {
		return "", err
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return "", err
	}
	cfg.PeerID = id.String()
	if err := writeJSON(filepath.Join(dir, configFile), cfg); err != nil {
		return "", err
	}
	if err := saveState(dir, &State{}); err != nil {
		return "", err
	}
	scripts := map[string]struct {
		text string
		mode os.FileMode
	}{
		initScriptFile: {initScript(dir, runAs(cfg.User), runUID), 0o755},
		uninstallFile:  {uninstallScript(dir), 0o755},
		unitFile:       {systemdUnit(dir, cfg.User), 0o644},
	}
	for name, sc := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sc.text), sc.mode); err != nil {
			return "", err
		}
	}
	return id, nil
}

func copyBinary(from, to string) error {
	if from == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the jumpmesh binary: %w", err)
		}
		from = exe
	}
	src, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("copying the jumpmesh binary: %w", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return fmt.Errorf("copying the jumpmesh binary: %w", err)
	}
	_, cerr := io.Copy(dst, src)
	if err := errors.Join(cerr, dst.Close()); err != nil {
		return fmt.Errorf("copying the jumpmesh binary: %w", err)
	}
	return nil
}

// handOver gives the peer's user what the daemon writes or must read, and
// nothing root executes or trusts. Root runs the binary, the init-script
// and uninstall (at boot, for status, to stop), so they stay root's and
// unwritable by the user; so does the directory, so the user can neither
// replace a file nor add one. The user gets:
//   - var/ (state.json, disabled), logs/, run/ (peer.pid): written as it runs;
//   - peer.key: the daemon reads it, a key file must be 0600, and root never
//     executes or trusts it (root's uninstall only says goodbye with it);
//   - group read on the directory and config.json (0640), through the
//     user's primary group.
func handOver(dir string, o owner) error {
	for _, d := range []string{varDir, logDir, runDir} {
		if err := chownTree(filepath.Join(dir, d), o.uid, o.gid); err != nil {
			return err
		}
	}
	if err := os.Lchown(filepath.Join(dir, keyFile), o.uid, o.gid); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{configFile, 0o640}, {".", installDirMode}} {
		path := filepath.Join(dir, f.name)
		if err := os.Lchown(path, 0, o.gid); err != nil {
			return err
		}
		if err := os.Chmod(path, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}
