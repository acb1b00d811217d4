// Package scenario reads lab scenario files (YAML) and runs them with real
// jumpmesh processes in a netlab topology. See docs/lab.md for the format.
package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/scenarios"
)

// Roles a host can have.
const (
	RoleCoordinator = "coordinator"
	RolePeer        = "peer"
	RoleConsole     = "console"
	RolePlain       = "plain"
	RoleRelay       = "relay"
	RoleJumpoint    = "jumpoint"
	// RoleEtcd is a member of the site's etcd cluster (ha.go): with etcd
	// hosts, init moves the site to the cluster and runs every coordinator
	// host on it.
	RoleEtcd = "etcd"
)

// roleList is the roles, for messages.
const roleList = "coordinator, etcd, relay, jumpoint, peer, console or plain"

// Scenario is a decoded scenario file.
type Scenario struct {
	Name        string    `yaml:"name"`
	Description string    `yaml:"description"`
	Networks    []Network `yaml:"networks"`
	Hosts       []Host    `yaml:"hosts"`
	Steps       []Step    `yaml:"steps"`
}

// Network is one network of the topology.
type Network struct {
	Name   string        `yaml:"name"`
	NAT    netlab.Preset `yaml:"nat"`
	Subnet string        `yaml:"subnet"`
	// Forwards are port forwards on the network's NAT router (easy, hard,
	// udp-blocked): TCP and UDP to Port of its public address go to Host.
	Forwards []Forward `yaml:"forwards"`
	Shape    `yaml:",inline"`
}

// Forward is one port forward: port (public side) to host:to-port (port
// when absent).
type Forward struct {
	Port   uint16 `yaml:"port"`
	Host   string `yaml:"host"`
	ToPort uint16 `yaml:"to-port"`
}

// Host is one host of the topology with its role.
type Host struct {
	Name    string `yaml:"name"`
	Network string `yaml:"network"`
	// Networks, instead of Network, puts the host on several networks,
	// one interface each (a dual-homed jumpoint: [plant, office]). Its
	// address (addr, ${HOST.addr}) is on the first; the default route
	// goes through the first with a gateway.
	Networks []string `yaml:"networks"`
	Role     string   `yaml:"role"`
	Addr     string   `yaml:"addr"`
	// Installer, for a peer, are more `installer create` flags for its
	// key (e.g. [--tag, linux, --comments, "rack 4"]).
	Installer []string `yaml:"installer"`
	Shape     `yaml:",inline"`
}

// Shape is a cable's shaping: a network's uplink or a host's cable.
type Shape struct {
	Latency Duration `yaml:"latency"`
	Jitter  Duration `yaml:"jitter"`
	Loss    float64  `yaml:"loss"` // percent
	Rate    uint64   `yaml:"rate"` // bits per second
}

// nets is the host's networks in order.
func (h Host) nets() []string {
	if h.Network != "" {
		return append([]string{h.Network}, h.Networks...)
	}
	return h.Networks
}

func (s Shape) link() netlab.Link {
	return netlab.Link{Latency: time.Duration(s.Latency), Jitter: time.Duration(s.Jitter), Loss: s.Loss, Rate: s.Rate}
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 30s or 150ms", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Step is one step: an action with its arguments, and expectations.
//
// In YAML a step is either a string ("install web-01") or a mapping whose
// first key is the action and its value the arguments, with options next to
// it ("exec: web-01 -- hostname" plus "expect-stdout: web-01").
type Step struct {
	Action string   // init, install, expect-online, expect-status, exec, console, stop, start, kill, partition, heal, sleep, suspend, …
	Args   []string // words after the action, without "within D"
	Within time.Duration
	// ExpectStdout must appear in an exec's (or console command's) standard output.
	ExpectStdout string
	// ExpectError, for a fetch, is a refusal: the forward must end before
	// it listens, saying this.
	ExpectError string
	// ExpectExit is the exec's (or console command's) expected exit
	// status (default 0).
	ExpectExit int
	// ExpectCode, for a console command, is the catalog code it must fail
	// with (from its --json error, or the code's message on stderr).
	ExpectCode string
	// ExpectStderr must appear in a console command's standard error (or
	// its --json error's message and detail).
	ExpectStderr string
	// ExpectPath, for exec and connect, is how the console must reach the
	// peer: "direct", "relayed" or "jumpoint" (for connect: at the end of
	// its wait).
	ExpectPath string
	// From is the console host an exec, console or connect step runs on
	// (default: the first console).
	From string
	// Runs is how many times a grid step connects every pair, or a
	// connect step its pair, each run checked (default 1).
	Runs int
	// WaitDirect is how long a connect or grid step waits for a relayed
	// connection to go direct (default 5s); for an exec, how long the jump
	// waits for the punch before opening its session (default: the CLI's
	// 1s, or 10s when the step expects a direct path).
	WaitDirect time.Duration
	// Background names an exec that runs while the next steps do; a later
	// "wait NAME" step ends when it does and checks its expectations.
	Background string
	line       int
}

// Name is the step as written, for reports: "install web-01".
func (s Step) Name() string {
	words := []string{s.Action}
	for _, a := range s.Args {
		if a == "" || strings.ContainsAny(a, " \t\n") {
			a = "'" + a + "'"
		}
		words = append(words, a)
	}
	n := strings.Join(words, " ")
	if s.Within > 0 {
		n += " within " + s.Within.String()
	}
	return n
}

var actions = map[string]struct{ min, max int }{
	"init":            {0, 0},
	"install":         {1, 1},
	"expect-online":   {1, 1},
	"expect-status":   {2, 2},
	"exec":            {3, -1}, // NAME -- CMD...
	"console":         {1, -1},
	"stop":            {1, 1},
	"start":           {1, 1},
	"kill":            {1, 1},
	"partition":       {1, 1},
	"heal":            {1, 1},
	"sleep":           {1, 1},
	"relay":           {1, 1},
	"connect":         {2, 2}, // CONSOLE PEER
	"expect-relay":    {1, 1}, // PEER holds a relay reservation
	"grid":            {0, 0},
	"wait":            {1, 1}, // NAME of a background exec
	"restart":         {1, 1},
	"serve":           {2, 2},  // PLAIN-HOST PORT
	"fetch":           {2, 2},  // PEER HOST:PORT
	"jumpoint":        {1, -1}, // NAME [jumpoint set flags]: enroll and run a jumpoint // NAME: enroll and run a jumpoint
	"cp":              {2, 2},  // PEER TEXT: a file round trip
	"capture":         {1, 1},  // HOST: capture its interfaces
	"expect-capture":  {3, 3},  // HOST has|lacks TEXT
	"expect-jumpoint": {3, 3},  // NAME peers N: peers connected to it
	"expect-splices":  {2, 2},  // RELAY N: bulk connections it spliced
	// Several coordinators on etcd (ha.go).
	"writes":      {1, 1}, // NAME: acknowledged writes from the console, in the background
	"expect-kept": {1, 1}, // NAME: stop them; every acknowledged one is there
	// Wake-on-LAN (wake.go).
	"suspend":             {1, 3}, // PEER [--password P]: the host sleeps
	"expect-awake":        {1, 1}, // PEER [within D]: a magic packet woke it
	"expect-asleep":       {3, 3}, // PEER for D: none did
	"expect-wake-sent":    {1, 1}, // HOST [within D]: it sent magic packets
	"expect-no-wake-sent": {1, 1}, // HOST: it sent none, and the audit never asked it
}

// UnmarshalYAML reads a step in either form.
func (s *Step) UnmarshalYAML(n *yaml.Node) error {
	s.line = n.Line
	var words string
	switch n.Kind {
	case yaml.ScalarNode:
		words = n.Value
	case yaml.MappingNode:
		if len(n.Content) < 2 {
			return fmt.Errorf("line %d: empty step", n.Line)
		}
		for i := 0; i < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			switch {
			case i == 0:
				words = k + " " + v.Value
			case k == "expect-stdout":
				s.ExpectStdout = v.Value
			case k == "expect-error":
				s.ExpectError = v.Value
			case k == "expect-code":
				if !catalog.Code(v.Value).Known() {
					return fmt.Errorf("line %d: expect-code: %q is not a code of the error catalog (jumpmesh errors)", v.Line, v.Value)
				}
				s.ExpectCode = v.Value
			case k == "expect-stderr":
				s.ExpectStderr = v.Value
			case k == "expect-path":
				if v.Value != "direct" && v.Value != "relayed" && v.Value != "jumpoint" {
					return fmt.Errorf("line %d: expect-path is direct, relayed or jumpoint", v.Line)
				}
				s.ExpectPath = v.Value
			case k == "expect-exit":
				if err := v.Decode(&s.ExpectExit); err != nil {
					return fmt.Errorf("line %d: expect-exit: %v", v.Line, err)
				}
			case k == "within" || k == "wait-direct":
				var d Duration
				if err := d.UnmarshalYAML(v); err != nil {
					return err
				}
				if k == "within" {
					s.Within = time.Duration(d)
				} else {
					s.WaitDirect = time.Duration(d)
				}
			case k == "from":
				s.From = v.Value
			case k == "background":
				if !nameRE().MatchString(v.Value) {
					return fmt.Errorf("line %d: background: a name of [a-z0-9-]", v.Line)
				}
				s.Background = v.Value
			case k == "runs":
				if err := v.Decode(&s.Runs); err != nil || s.Runs < 1 || s.Runs > 100 {
					return fmt.Errorf("line %d: runs is 1 to 100", v.Line)
				}
			default:
				return fmt.Errorf("line %d: unknown step option %q (expect-stdout, expect-stderr, expect-error, expect-exit, expect-code, expect-path, within, from, runs, wait-direct, background)", n.Content[i].Line, k)
			}
		}
	default:
		return fmt.Errorf("line %d: a step is a string or a mapping", n.Line)
	}
	f, err := splitWords(words)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	if len(f) == 0 {
		return fmt.Errorf("line %d: empty step", n.Line)
	}
	s.Action, s.Args = f[0], f[1:]
	if s.Action != "exec" && s.Action != "console" && s.Action != "cp" && len(s.Args) >= 2 && s.Args[len(s.Args)-2] == "within" {
		d, err := time.ParseDuration(s.Args[len(s.Args)-1])
		if err != nil {
			return fmt.Errorf("line %d: within %q: not a duration", n.Line, s.Args[len(s.Args)-1])
		}
		s.Within, s.Args = d, s.Args[:len(s.Args)-2]
	}
	if s.Action == "expect-online" {
		if len(s.Args) != 1 {
			return fmt.Errorf("line %d: expect-online NAME [within D]", n.Line)
		}
		s.Action, s.Args = "expect-status", []string{s.Args[0], "online"}
	}
	a, ok := actions[s.Action]
	if !ok {
		return fmt.Errorf("line %d: unknown step %q", n.Line, s.Action)
	}
	if len(s.Args) < a.min || (a.max >= 0 && len(s.Args) > a.max) {
		return fmt.Errorf("line %d: step %q: wrong number of arguments", n.Line, words)
	}
	if s.Action == "exec" && s.Args[1] != "--" {
		return fmt.Errorf("line %d: exec NAME -- COMMAND [ARGS...]", n.Line)
	}
	return nil
}

// splitWords splits a step into words as a shell would for plain words and
// quotes: 'single' and "double" quoted parts keep their spaces (no escapes,
// no variables: ${HOST.addr} is the runner's, expanded later).
func splitWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
	)
	for _, c := range s {
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t' || c == '\n':
			if in {
				words, in = append(words, cur.String()), false
				cur.Reset()
			}
		default:
			cur.WriteRune(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// Parse decodes and validates a scenario file.
func Parse(data []byte) (*Scenario, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var sc Scenario
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	if err := sc.validate(); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	return &sc, nil
}

// nameRE is compiled at its first use: every jumpmesh process, a jump's
// included, initialises this package (issue 17).
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`) })

func (sc *Scenario) validate() error {
	if !nameRE().MatchString(sc.Name) {
		return fmt.Errorf("name %q: use [a-z0-9-]", sc.Name)
	}
	roles := map[string]string{}
	count := map[string]int{}
	for _, h := range sc.Hosts {
		switch h.Role {
		case RoleCoordinator, RolePeer, RoleConsole, RolePlain, RoleRelay, RoleJumpoint, RoleEtcd:
		case "":
			return fmt.Errorf("host %s: no role (%s)", h.Name, roleList)
		default:
			return fmt.Errorf("host %s: unknown role %q (%s)", h.Name, h.Role, roleList)
		}
		if (h.Network == "") == (len(h.Networks) == 0) {
			return fmt.Errorf("host %s: give network or networks, not both or neither", h.Name)
		}
		roles[h.Name] = h.Role
		count[h.Role]++
		if len(h.Installer) > 0 && h.Role != RolePeer {
			return fmt.Errorf("host %s: installer options are for peers", h.Name)
		}
	}
	if count[RoleCoordinator] > 1 && count[RoleEtcd] == 0 {
		return errors.New("at most one coordinator, or several with etcd hosts (role etcd) to share")
	}
	if count[RoleEtcd] > 0 && count[RoleCoordinator] == 0 {
		return errors.New("etcd hosts need a coordinator host")
	}
	if _, err := sc.Topology(); err != nil {
		return err
	}
	nets := map[string]bool{}
	for _, n := range sc.Networks {
		nets[n.Name] = true
	}
	inited := false
	background := map[string]bool{} // started, not yet waited for
	writes := map[string]bool{}     // write loads started, not yet checked
	for _, s := range sc.Steps {
		where := fmt.Sprintf("step %q (line %d)", s.Name(), s.line)
		need := func(name string, want ...string) error {
			r, ok := roles[name]
			if !ok {
				return fmt.Errorf("%s: no host %q", where, name)
			}
			if len(want) > 0 && !slices.Contains(want, r) {
				return fmt.Errorf("%s: %s is a %s, not a %s", where, name, r, strings.Join(want, " or "))
			}
			return nil
		}
		var err error
		if s.From != "" {
			if !slices.Contains([]string{"exec", "console", "fetch", "cp"}, s.Action) {
				return fmt.Errorf("%s: from is for exec, console, fetch and cp steps", where)
			}
			if err := need(s.From, RoleConsole); err != nil {
				return err
			}
		}
		switch s.Action {
		case "init":
			if count[RoleCoordinator] == 0 || count[RoleConsole] == 0 {
				err = fmt.Errorf("%s: needs a coordinator host and a console host", where)
			}
			inited = true
		case "expect-relay":
			err = need(s.Args[0], RolePeer, RoleJumpoint)
			if err == nil && !inited {
				err = fmt.Errorf("%s: comes before init", where)
			}
		case "install", "expect-status", "exec":
			err = need(s.Args[0], RolePeer)
			if err == nil && !inited {
				err = fmt.Errorf("%s: comes before init", where)
			}
		case "relay":
			err = need(s.Args[0], RoleRelay)
			if err == nil && !inited {
				err = fmt.Errorf("%s: comes before init", where)
			}
		case "jumpoint":
			err = need(s.Args[0], RoleJumpoint)
			if err == nil && !inited {
				err = fmt.Errorf("%s: comes before init", where)
			}
		case "expect-splices":
			err = need(s.Args[0], RoleRelay)
			if n, perr := strconv.Atoi(s.Args[1]); err == nil && (perr != nil || n < 1) {
				err = fmt.Errorf("%s: expect-splices RELAY N (N ≥ 1)", where)
			}
		case "expect-jumpoint":
			err = need(s.Args[0], RoleJumpoint)
			if n, perr := strconv.Atoi(s.Args[2]); err == nil && (s.Args[1] != "peers" || perr != nil || n < 0) {
				err = fmt.Errorf("%s: expect-jumpoint NAME peers N", where)
			}
		case "cp":
			err = need(s.Args[0], RolePeer)
			if err == nil && !inited {
				err = fmt.Errorf("%s: comes before init", where)
			}
		case "capture":
			err = need(s.Args[0])
		case "expect-capture":
			err = need(s.Args[0])
			if err == nil && s.Args[1] != "has" && s.Args[1] != "lacks" {
				err = fmt.Errorf("%s: expect-capture HOST has|lacks TEXT", where)
			}
			if err == nil && s.Args[2] == "" {
				err = fmt.Errorf("%s: expect-capture: empty text", where)
			}
		case "console":
			if !inited {
				err = fmt.Errorf("%s: comes before init", where)
			}
		case "connect":
			err = errors.Join(need(s.Args[0], RoleConsole), need(s.Args[1], RolePeer))
			if err == nil && !inited {
				err = fmt.Errorf("%s: comes before init", where)
			}
		case "grid":
			if count[RolePeer] == 0 || !inited {
				err = fmt.Errorf("%s: needs peers and comes after init", where)
			}
		case "stop", "start", "kill", "restart":
			err = need(s.Args[0], RolePeer, RoleCoordinator, RoleRelay, RoleJumpoint, RoleEtcd)
		case "writes":
			if !inited {
				err = fmt.Errorf("%s: comes before init", where)
			} else if writes[s.Args[0]] {
				err = fmt.Errorf("%s: writes %s runs already", where, s.Args[0])
			}
			writes[s.Args[0]] = true
		case "expect-kept":
			if !writes[s.Args[0]] {
				err = fmt.Errorf("%s: no writes %q started before it", where, s.Args[0])
			}
			delete(writes, s.Args[0])
		case "serve":
			err = need(s.Args[0], RolePlain)
			if _, perr := strconv.ParseUint(s.Args[1], 10, 16); err == nil && perr != nil {
				err = fmt.Errorf("%s: %q is not a port", where, s.Args[1])
			}
		case "fetch":
			err = need(s.Args[0], RolePeer, RoleJumpoint)
			if err == nil && !inited {
				err = fmt.Errorf("%s: comes before init", where)
			}
		case "wait":
			if !background[s.Args[0]] {
				err = fmt.Errorf("%s: no background exec %q started before it", where, s.Args[0])
			}
			delete(background, s.Args[0])
		case "partition", "heal":
			if _, ok := roles[s.Args[0]]; !ok && !nets[s.Args[0]] {
				err = fmt.Errorf("%s: no host or network %q", where, s.Args[0])
			}
		case "sleep":
			_, err = time.ParseDuration(s.Args[0])
		case "suspend":
			err = need(s.Args[0], RolePeer)
			if err == nil && len(s.Args) > 1 {
				if len(s.Args) != 3 || s.Args[1] != "--password" {
					err = fmt.Errorf("%s: suspend PEER [--password XX-XX-XX-XX-XX-XX]", where)
				} else if _, perr := wake.ParsePassword(s.Args[2]); perr != nil {
					err = fmt.Errorf("%s: %v", where, perr)
				}
			}
			if err == nil && !inited {
				err = fmt.Errorf("%s: comes before init", where)
			}
		case "expect-awake":
			err = need(s.Args[0], RolePeer)
		case "expect-asleep":
			err = need(s.Args[0], RolePeer)
			if _, derr := time.ParseDuration(s.Args[2]); err == nil && (s.Args[1] != "for" || derr != nil) {
				err = fmt.Errorf("%s: expect-asleep PEER for D", where)
			}
		case "expect-wake-sent", "expect-no-wake-sent":
			err = need(s.Args[0], RolePeer, RoleJumpoint)
			if err == nil && !inited {
				err = fmt.Errorf("%s: comes before init", where)
			}
		}
		if s.ExpectError != "" && s.Action != "fetch" {
			err = fmt.Errorf("%s: expect-error is for fetch steps", where)
		}
		if (s.ExpectCode != "" || s.ExpectStderr != "") && s.Action != "console" {
			err = fmt.Errorf("%s: expect-code and expect-stderr are for console steps", where)
		}
		if s.ExpectExit != 0 && s.Action != "exec" && s.Action != "console" {
			err = fmt.Errorf("%s: expect-exit is for exec and console steps", where)
		}
		if s.Background != "" {
			if s.Action != "exec" || background[s.Background] {
				err = fmt.Errorf("%s: background is for exec steps, one name each", where)
			}
			background[s.Background] = true
		}
		if err != nil {
			return err
		}
	}
	for name := range background {
		return fmt.Errorf("background exec %q is never waited for", name)
	}
	for name := range writes {
		return fmt.Errorf("writes %q are never checked (expect-kept %s)", name, name)
	}
	return nil
}

// Topology is the scenario's netlab topology.
func (sc *Scenario) Topology() (netlab.Topology, error) {
	var t netlab.Topology
	for _, n := range sc.Networks {
		ns := netlab.NetworkSpec{Name: n.Name, NAT: n.NAT, Uplink: n.link()}
		for _, f := range n.Forwards {
			ns.Forwards = append(ns.Forwards, netlab.PortForward{Port: f.Port, Host: f.Host, HostPort: f.ToPort})
		}
		if n.Subnet != "" {
			p, err := parsePrefix(n.Subnet)
			if err != nil {
				return t, fmt.Errorf("network %s: subnet: %w", n.Name, err)
			}
			ns.Subnet = p
		}
		t.Networks = append(t.Networks, ns)
	}
	for _, h := range sc.Hosts {
		nets := h.nets()
		if len(nets) == 0 {
			return t, fmt.Errorf("host %s: no network", h.Name)
		}
		hs := netlab.HostSpec{Name: h.Name, Network: nets[0], Link: h.link()}
		for _, n := range nets[1:] {
			// The same shaping on every cable of the host.
			hs.More = append(hs.More, netlab.Attachment{Network: n, Link: h.link()})
		}
		if h.Addr != "" {
			a, err := parseAddr(h.Addr)
			if err != nil {
				return t, fmt.Errorf("host %s: addr: %w", h.Name, err)
			}
			hs.Addr = a
		}
		t.Hosts = append(t.Hosts, hs)
	}
	return t, t.Validate()
}

// Load reads a scenario from a file, or, when ref names no file and has no
// path separator, the shipped scenario of that name.
func Load(ref string) (*Scenario, error) {
	data, err := os.ReadFile(ref)
	if errors.Is(err, fs.ErrNotExist) && !strings.ContainsRune(ref, '/') {
		name := strings.TrimSuffix(ref, ".yaml")
		data, err = fs.ReadFile(scenarios.FS, name+".yaml")
		if err != nil {
			return nil, fmt.Errorf("no scenario file %q and no shipped scenario of that name (shipped: %s)", ref, strings.Join(Shipped(), ", "))
		}
	} else if err != nil {
		return nil, err
	}
	return Parse(data)
}

// Shipped lists the names of the shipped scenarios.
func Shipped() []string {
	var names []string
	entries, _ := fs.ReadDir(scenarios.FS, ".")
	for _, e := range entries {
		if path.Ext(e.Name()) == ".yaml" {
			names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
		}
	}
	return names
}

func parsePrefix(s string) (netip.Prefix, error) { return netip.ParsePrefix(s) }
func parseAddr(s string) (netip.Addr, error)     { return netip.ParseAddr(s) }
