package peer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Files of an install directory.
const (
	configFile   = "config.json"
	stateFile    = "state.json"
	disabledFile = "disabled"
	// varDir holds what the peer's user writes (state.json, disabled); in
	// an install by root it is the user's, the directory itself is root's.
	varDir          = "var"
	keyFile         = "peer.key"
	binaryFile      = "jumpmesh"
	initScriptFile  = "init-script"
	uninstallFile   = "uninstall"
	unitFile        = "jumpmesh-peer.service"
	logDir          = "logs"
	runDir          = "run"
	pidFileName     = "peer.pid"
	configVersion   = 1
	installDirMode  = 0o750
	privateFileMode = 0o600
)

// Config is config.json: what the install decided. It does not change
// after install.
type Config struct {
	Version      int    `json:"version"`
	InstallerKey string `json:"installer_key"`
	InstallerID  string `json:"installer_id"`
	Site         string `json:"site"`
	// SiteAddrs are the coordinator's addresses from the key; PublicSiteAddress
	// (--jc-public-site-address), when set, is used instead.
	SiteAddrs         []string `json:"site_addrs"`
	PublicSiteAddress string   `json:"public_site_address,omitempty"`
	Relays            []string `json:"relays,omitempty"`
	// Jumpoints, when the key names any, are the only way the peer reaches
	// the site: through them, in this order (peer/jumpoint.go).
	Jumpoints []JumpointConfig `json:"jumpoints,omitempty"`
	// LegacyJumpoint is the single jumpoint ID of installs made before
	// jumpoints had names and addresses; LoadConfig moves it to Jumpoints.
	LegacyJumpoint string `json:"jumpoint,omitempty"`
	// Overrides are the host's install-time choices; OverrideFields is the
	// installerkey.Field set of those given.
	Overrides      Overrides `json:"overrides"`
	OverrideFields uint32    `json:"override_fields"`
	// FirstContactBy is the installer key's end: a peer that never reached
	// the coordinator by then uninstalls itself.
	FirstContactBy time.Time `json:"first_contact_by"`
	// MaxOfflineMinutes is the installer's (or the override's) offline limit;
	// 0 means the site's delete horizon.
	MaxOfflineMinutes uint32    `json:"max_offline_minutes,omitempty"`
	InstalledAt       time.Time `json:"installed_at"`
	User              string    `json:"user,omitempty"`
	// PeerID is the peer's ID, recorded at install: the local policy
	// statement must name it.
	PeerID string `json:"peer_id,omitempty"`
}

// JumpointConfig is one jumpoint the peer talks to the site through: its
// peer ID, its name at the site, and its multiaddrs on the peer's network
// (without /p2p/).
type JumpointConfig struct {
	ID    string   `json:"id"`
	Name  string   `json:"name,omitempty"`
	Addrs []string `json:"addrs,omitempty"`
	// PeerPort is the jumpoint's peer-link port on the IP addresses of
	// Addrs; 0 (installs from keys made before links): a tunnel over a
	// libp2p connection instead.
	PeerPort uint32 `json:"peer_port,omitempty"`
}

// Overrides are the install flags --jc-*.
type Overrides struct {
	Name                    string `json:"name,omitempty"`
	Group                   string `json:"jump_group,omitempty"`
	Tag                     string `json:"tag,omitempty"`
	Comments                string `json:"comments,omitempty"`
	JumpPolicy              string `json:"jump_policy,omitempty"`
	SessionPolicyPresent    string `json:"session_policy_present,omitempty"`
	SessionPolicyNotPresent string `json:"session_policy_not_present,omitempty"`
	MaxOfflineMinutes       uint32 `json:"max_offline_minutes,omitempty"`
	Ephemeral               bool   `json:"ephemeral,omitempty"`
}

func (o Overrides) toPB() *pb.InstallerDefaults {
	return &pb.InstallerDefaults{Name: o.Name, Group: o.Group, Tag: o.Tag, Comments: o.Comments, JumpPolicy: o.JumpPolicy,
		SessionPolicyPresent: o.SessionPolicyPresent, SessionPolicyNotPresent: o.SessionPolicyNotPresent,
		MaxOfflineMinutes: o.MaxOfflineMinutes, Ephemeral: o.Ephemeral}
}

// State is state.json: what the peer learned and did, rewritten as it runs.
type State struct {
	// Contacted is true once the coordinator welcomed the peer.
	Contacted   bool      `json:"contacted"`
	LastContact time.Time `json:"last_contact,omitzero"`
	Connected   bool      `json:"connected"`
	// Learned from the coordinator and kept for when it is out of reach.
	Name                 string `json:"name,omitempty"`
	DeleteAfterDays      uint32 `json:"delete_after_days,omitempty"`
	MaxOfflineMinutes    uint32 `json:"max_offline_minutes,omitempty"`
	StatsIntervalSeconds uint32 `json:"stats_interval_seconds,omitempty"`
	// LocalPolicy is the site's last signed statement of the restrictions
	// on the host's users (a pb.LocalPolicy), verified at every use.
	LocalPolicy   []byte    `json:"local_policy,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorCode string    `json:"last_error_code,omitempty"`
	LastErrorAt   time.Time `json:"last_error_at,omitzero"`
	PID           int       `json:"pid,omitempty"`
	// Relays are the relays the peer holds a reservation on.
	Relays []string `json:"relays,omitempty"`
	// RelayAddrs are the relays the site last named (welcome, updates),
	// with their peer IDs: where the peer asks for the site when no
	// coordinator address it knows answers (coorddht.go).
	RelayAddrs []string `json:"relay_addrs,omitempty"`
	// SiteAddrs are every live coordinator's addresses as the site last
	// told them (welcome, updates): the peer dials them with the key's
	// (siteaddrs.go).
	SiteAddrs []string `json:"site_addrs,omitempty"`
	// NAT is what the peer last reported of its NAT (nat.go).
	NAT *NAT `json:"nat,omitempty"`
	// Passive mode (passive.go). ConnectionType ("active", "passive"),
	// PassivePort and PassiveIdleSeconds are the coordinator's word, from
	// the last welcome. PassiveListen is where the passive listener is
	// open ("" none; PassiveError says why when it could not open);
	// Listening is true while the peer is passive (not connected, waiting
	// for a wake command), since PassiveSince; PassiveCounters are the
	// listener's counters.
	ConnectionType     string           `json:"connection_type,omitempty"`
	PassivePort        uint32           `json:"passive_port,omitempty"`
	PassiveIdleSeconds uint32           `json:"passive_idle_seconds,omitempty"`
	PassiveListen      string           `json:"passive_listen,omitempty"`
	PassiveError       string           `json:"passive_error,omitempty"`
	Listening          bool             `json:"listening,omitempty"`
	PassiveSince       time.Time        `json:"passive_since,omitzero"`
	PassiveCounters    *PassiveCounters `json:"passive_counters,omitempty"`
}

// maxLocalFile bounds what is read from an install directory's files.
const maxLocalFile = 1 << 20

// readLocalFile reads a regular file of the install directory without
// following a symlink and without blocking on a FIFO: in an install by
// root, var/ and run/ are the peer's user's, and root reads them.
func readLocalFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, maxLocalFile))
}

func readJSON(path string, v any) error {
	raw, err := readLocalFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return mesh.WriteFileAtomic(path, append(raw, '\n'), privateFileMode)
}

// LoadConfig reads an install directory's config.json.
func LoadConfig(dir string) (*Config, error) {
	var c Config
	err := readJSON(filepath.Join(dir, configFile), &c)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "%s is not a peer install directory (no %s).", dir, configFile)
	}
	if err != nil {
		return nil, err
	}
	if c.Version != configVersion {
		return nil, fmt.Errorf("%s: config version %d, this jumpmesh reads %d", dir, c.Version, configVersion)
	}
	if c.LegacyJumpoint != "" && len(c.Jumpoints) == 0 {
		c.Jumpoints = []JumpointConfig{{ID: c.LegacyJumpoint}}
	}
	c.LegacyJumpoint = ""
	return &c, nil
}

// userDir is where the peer's user writes: var/, or the install directory
// itself in an install made before var/ existed.
func userDir(dir string) string {
	v := filepath.Join(dir, varDir)
	if st, err := os.Lstat(v); err == nil && st.IsDir() {
		return v
	}
	return dir
}

// LoadState reads state.json; a missing one is the zero state.
func LoadState(dir string) (*State, error) {
	var s State
	err := readJSON(filepath.Join(userDir(dir), stateFile), &s)
	if errors.Is(err, fs.ErrNotExist) {
		return &s, nil
	}
	return &s, err
}

func saveState(dir string, s *State) error {
	return writeJSON(filepath.Join(userDir(dir), stateFile), s)
}

// offlineLimit is how long the peer may stay out of touch before it
// uninstalls itself: its own limit, else the site's delete horizon as last
// learned (the seeds: a changed horizon applies once the peer has heard it).
func (c *Config) offlineLimit(s *State) time.Duration {
	if s.MaxOfflineMinutes > 0 {
		return time.Duration(s.MaxOfflineMinutes) * time.Minute
	}
	if c.MaxOfflineMinutes > 0 {
		return time.Duration(c.MaxOfflineMinutes) * time.Minute
	}
	d := s.DeleteAfterDays
	if d == 0 {
		d = defaultDeleteAfterDays
	}
	return time.Duration(d) * 24 * time.Hour
}

// defaultDeleteAfterDays is the seeds' default horizon, used until the
// coordinator says otherwise.
const defaultDeleteAfterDays = 180

// UninstallReason says why the peer must uninstall itself at now, or "".
func UninstallReason(c *Config, s *State, now time.Time) string {
	if !s.Contacted {
		if !now.Before(c.FirstContactBy) {
			return fmt.Sprintf("never reached the coordinator before the installer key expired at %s", c.FirstContactBy.UTC().Format(time.RFC3339))
		}
		return ""
	}
	if limit := c.offlineLimit(s); now.Sub(s.LastContact) >= limit {
		return fmt.Sprintf("out of touch with the coordinator since %s, longer than %s", s.LastContact.UTC().Format(time.RFC3339), limit)
	}
	return ""
}

func peerIDOf(key crypto.PrivKey) (peer.ID, error) { return peer.IDFromPrivateKey(key) }
