package coordinator

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Settings are edited as key=value pairs (`jumpmesh settings set
// lost-after-days=45`). Every key is described once, in settingsSpecs, which
// gives its parser, its display form, its range check and its default rule.

const (
	settingsKiB = 1 << 10
	settingsMiB = 1 << 20
	settingsGiB = 1 << 30
)

// DefaultSettings returns the settings of a new site (the seeds' defaults).
func DefaultSettings() *pb.Settings {
	return &pb.Settings{
		LostAfterDays:          30,
		DeleteAfterDays:        180,
		ConnectionRate:         50,
		MaxSessionStarts:       20,
		ConcurrentJumps:        true,
		PassivePort:            5832,
		StatsIntervalSeconds:   60,
		UninstalledBehavior:    pb.UninstalledBehavior_UNINSTALLED_BEHAVIOR_MARK,
		RestrictLocalUninstall: false,
		MaxPeers:               0,
		MaxActivePeers:         0,
		MaxConcurrentUpgrades:  20,
		UpgradeBandwidth:       10 * settingsMiB,
		DefaultConnectionType:  pb.ConnectionType_CONNECTION_TYPE_ACTIVE,
		AllowWake:              proto.Bool(true),
		PassiveIdleSeconds:     900,
		NatPrediction:          proto.Bool(true),
		NatProbing:             proto.Bool(true),
		BulkConnections:        proto.Bool(true),
	}
}

// SettingsWithDefaults returns a copy of s with unset fields filled from
// DefaultSettings. Settings are always stored whole, so this matters for a
// missing record (nil: all defaults) and for fields added in a later version.
// A zero is only replaced where it is not a valid value: a stored false or a
// stored 0 (unlimited) max-peers is the administrator's choice and is kept.
func SettingsWithDefaults(s *pb.Settings) *pb.Settings {
	def := DefaultSettings()
	if s == nil {
		return def
	}
	out := proto.Clone(s).(*pb.Settings)
	for _, spec := range settingsSpecs {
		if spec.fill != nil {
			spec.fill(out, def)
		}
	}
	return out
}

// ApplySettings returns a new copy of cur with values (key → text) applied.
// The result is checked as a whole, so related keys given in one call are
// judged together. On error it returns nil and an error that lists every
// problem; cur is never modified.
func ApplySettings(cur *pb.Settings, values map[string]string) (*pb.Settings, error) {
	next := SettingsWithDefaults(cur)
	var errs []*catalog.Error
	if err := settingsUnknownKeys(values); err != nil {
		errs = append(errs, err)
	}
	parseErrs := make(map[string]*catalog.Error)
	for _, spec := range settingsSpecs {
		if v, ok := values[spec.key]; ok {
			if err := spec.set(next, strings.TrimSpace(v)); err != nil {
				parseErrs[spec.key] = err
			}
		}
	}
	errs = append(errs, settingsCheck(next, parseErrs)...)
	if err := settingsJoin(errs); err != nil {
		return nil, err
	}
	return next, nil
}

// ValidateSettings checks every field of s and the rules between fields.
func ValidateSettings(s *pb.Settings) error {
	if s == nil {
		return catalog.Errorf(catalog.CodeInvalidArgument, "Settings are missing.")
	}
	return settingsJoin(settingsCheck(s, nil))
}

// SettingInfo is one row of the settings table shown to administrators.
type SettingInfo struct {
	Key, Value, Default, Range, Description string
}

// SettingsTable describes s (nil: the defaults) key by key, in a fixed order.
// Values are written so that they can be given back to ApplySettings.
func SettingsTable(s *pb.Settings) []SettingInfo {
	s = SettingsWithDefaults(s)
	def := DefaultSettings()
	rows := make([]SettingInfo, 0, len(settingsSpecs))
	for _, spec := range settingsSpecs {
		rows = append(rows, SettingInfo{
			Key: spec.key, Value: spec.show(s), Default: spec.show(def),
			Range: spec.rng, Description: spec.desc,
		})
	}
	return rows
}

// SettingKeys lists the keys ApplySettings accepts, in table order.
func SettingKeys() []string {
	keys := make([]string, len(settingsSpecs))
	for i, spec := range settingsSpecs {
		keys[i] = spec.key
	}
	return keys
}

func settingsUnknownKeys(values map[string]string) *catalog.Error {
	var unknown []string
	for k := range values {
		if settingsSpecByKey(k) == nil {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return catalog.Errorf(catalog.CodeInvalidArgument, "Unknown setting %s; valid keys are %s.",
		strings.Join(unknown, ", "), strings.Join(SettingKeys(), ", "))
}

func settingsSpecByKey(key string) *settingSpec {
	for i := range settingsSpecs {
		if settingsSpecs[i].key == key {
			return &settingsSpecs[i]
		}
	}
	return nil
}

// settingsCheck returns the problems of s in table order. A key whose text
// could not be parsed reports that instead of its range, and rules between
// keys are skipped when one side is already wrong, so each mistake is
// reported once.
func settingsCheck(s *pb.Settings, parseErrs map[string]*catalog.Error) []*catalog.Error {
	var errs []*catalog.Error
	bad := make(map[string]bool)
	for _, spec := range settingsSpecs {
		err := parseErrs[spec.key]
		if err == nil && spec.check != nil {
			err = spec.check(s)
		}
		if err != nil {
			errs = append(errs, err)
			bad[spec.key] = true
		}
	}
	if !bad["lost-after-days"] && !bad["delete-after-days"] && s.LostAfterDays >= s.DeleteAfterDays {
		errs = append(errs, catalog.Errorf(catalog.CodeOutOfRange,
			"lost-after-days (%d) must be less than delete-after-days (%d), so that lost peers can be noticed before they are deleted.",
			s.LostAfterDays, s.DeleteAfterDays))
	}
	if !bad["max-peers"] && !bad["max-active-peers"] && s.MaxPeers != 0 && s.MaxActivePeers > s.MaxPeers {
		errs = append(errs, catalog.Errorf(catalog.CodeOutOfRange,
			"max-active-peers (%d) must not exceed max-peers (%d).", s.MaxActivePeers, s.MaxPeers))
	}
	return errs
}

// settingsJoin makes one *mesh.Error of several, so that all of them survive
// the trip to the console (the wire form keeps one code and one detail). The
// individual errors stay reachable through errors.As on the cause.
func settingsJoin(errs []*catalog.Error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	code := errs[0].Code
	details := make([]string, len(errs))
	causes := make([]error, len(errs))
	for i, e := range errs {
		if e.Code != code {
			code = catalog.CodeInvalidArgument
		}
		details[i] = e.Detail
		causes[i] = e
	}
	return &catalog.Error{
		Code:   code,
		Detail: fmt.Sprintf("%d settings problems: %s", len(errs), strings.Join(details, " ")),
		Err:    errors.Join(causes...),
	}
}

// settingsRangeError is the one wording of "value out of range".
func settingsRangeError(key, between, got string) *catalog.Error {
	return catalog.Errorf(catalog.CodeOutOfRange, "%s must be between %s (got %s).", key, between, got)
}

// formatBandwidth writes bytes per second in the largest binary unit that
// divides it, which ApplySettings reads back.
func formatBandwidth(b uint64) string {
	switch {
	case b != 0 && b%settingsMiB == 0:
		return fmt.Sprintf("%d MiB/s", b/settingsMiB)
	case b != 0 && b%settingsKiB == 0:
		return fmt.Sprintf("%d KiB/s", b/settingsKiB)
	}
	return fmt.Sprintf("%d B/s", b)
}

// settingsBandwidthRE is compiled at its first use: every jumpmesh process, a jump's
// included, initialises this package (issue 17).
var settingsBandwidthRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(b|kib|mib|gib)?$`)
})

var settingsBandwidthUnits = map[string]float64{"": 1, "b": 1, "kib": settingsKiB, "mib": settingsMiB, "gib": settingsGiB}

// parseBandwidth reads "25MiB/s", "25 MiB", "512KiB/s" or a plain number of
// bytes. Decimal units (MB, kB) are refused rather than guessed: MB and Mb
// (megabits) differ eightfold.
func parseBandwidth(key, v string) (uint64, *catalog.Error) {
	s := strings.ToLower(strings.ReplaceAll(v, " ", ""))
	m := settingsBandwidthRE().FindStringSubmatch(strings.TrimSuffix(s, "/s"))
	if m == nil {
		return 0, catalog.Errorf(catalog.CodeInvalidArgument,
			"%s must be a rate such as \"25MiB/s\" or \"512KiB/s\", or a number of bytes per second; units are B, KiB, MiB and GiB (got %q).", key, v)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	n = math.Round(n * settingsBandwidthUnits[m[2]])
	if n > 1<<40 { // far beyond any valid value; keeps the conversion exact
		return 0, settingsRangeError(key, "1 KiB/s and 100 MiB/s", v)
	}
	return uint64(n), nil
}

// formatInterval writes seconds as a Go duration, in the unit people would
// use: "60s", "5m", "1h".
func formatInterval(sec uint32) string {
	switch {
	case sec != 0 && sec%3600 == 0:
		return fmt.Sprintf("%dh", sec/3600)
	case sec >= 120 && sec%60 == 0:
		return fmt.Sprintf("%dm", sec/60)
	}
	return fmt.Sprintf("%ds", sec)
}

func parseInterval(key, v string) (uint32, *catalog.Error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, catalog.Errorf(catalog.CodeInvalidArgument,
			"%s must be a duration with a unit, such as \"30s\" or \"5m\" (got %q).", key, v)
	}
	if d%time.Second != 0 {
		return 0, catalog.Errorf(catalog.CodeInvalidArgument, "%s must be a whole number of seconds (got %s).", key, d)
	}
	if d < 0 || d/time.Second > math.MaxUint32 {
		return 0, settingsRangeError(key, "5s and 1h", d.String())
	}
	return uint32(d / time.Second), nil
}

var settingsBoolWords = map[string]bool{
	"true": true, "yes": true, "on": true, "1": true,
	"false": false, "no": false, "off": false, "0": false,
}

func parseSettingBool(key, v string) (bool, *catalog.Error) {
	b, ok := settingsBoolWords[strings.ToLower(v)]
	if !ok {
		return false, catalog.Errorf(catalog.CodeInvalidArgument,
			"%s must be true or false; yes/no, on/off and 1/0 also work (got %q).", key, v)
	}
	return b, nil
}

// settingSpec describes one key.
type settingSpec struct {
	key, desc string
	rng       string                                    // allowed values, for people
	show      func(*pb.Settings) string                 // value as ApplySettings reads it
	set       func(*pb.Settings, string) *catalog.Error // parses text into the field
	check     func(*pb.Settings) *catalog.Error         // nil when every parsed value is valid
	fill      func(s, def *pb.Settings)                 // nil when zero is a meaningful value
}

var settingsSpecs = []settingSpec{
	settingUint("lost-after-days", settingsUintRange{lo: 15, hi: 3650, unit: " days"},
		func(s *pb.Settings) *uint32 { return &s.LostAfterDays },
		"Days offline after which a peer is marked lost (a label only; it must be less than delete-after-days)."),
	settingUint("delete-after-days", settingsUintRange{lo: 15, hi: 3650, unit: " days"},
		func(s *pb.Settings) *uint32 { return &s.DeleteAfterDays },
		"Days offline after which a peer uninstalls itself and is removed from the site."),
	settingUint("connection-rate", settingsUintRange{lo: 1, hi: 300, unit: " per second"},
		func(s *pb.Settings) *uint32 { return &s.ConnectionRate },
		"Peers allowed to connect to the coordinator per second, e.g. after an upgrade or a network outage."),
	settingUint("max-session-starts", settingsUintRange{lo: 1, hi: 1000},
		func(s *pb.Settings) *uint32 { return &s.MaxSessionStarts },
		"Sessions that may be starting at the same time; beyond that, jumps fail with \"server too busy\"."),
	settingUint("max-session-starts-per-technician", settingsUintRange{lo: 0, hi: 1000, zero: "half"},
		func(s *pb.Settings) *uint32 { return &s.MaxSessionStartsPerTechnician },
		"Session starts one technician may have in flight (half: half of max-session-starts, at least 1), so that one cannot hold them all."),
	settingBool("concurrent-jumps", func(s *pb.Settings) *bool { return &s.ConcurrentJumps },
		"Let several technicians jump to the same peer at once; if false, the others need an invitation."),
	settingUint("passive-port", settingsUintRange{lo: 1, hi: 65535},
		func(s *pb.Settings) *uint32 { return &s.PassivePort },
		"Port on which passive peers listen for a wake command (open it in the host's firewall)."),
	settingStatsInterval(),
	settingChoice("uninstalled-behavior", []string{"", "mark", "remove"},
		func(s *pb.Settings) *pb.UninstalledBehavior { return &s.UninstalledBehavior },
		"What happens to a peer uninstalled on its host: mark keeps it listed as uninstalled, remove deletes it."),
	settingBool("restrict-local-uninstall", func(s *pb.Settings) *bool { return &s.RestrictLocalUninstall },
		"Only administrators of the host may uninstall or disable the peer there."),
	settingUint("max-peers", settingsUintRange{lo: 0, hi: 10_000_000, zero: "unlimited"},
		func(s *pb.Settings) *uint32 { return &s.MaxPeers },
		"Most peers the site may have (build limit)."),
	settingUint("max-active-peers", settingsUintRange{lo: 0, hi: 10_000_000, zero: "unlimited"},
		func(s *pb.Settings) *uint32 { return &s.MaxActivePeers },
		"Most active peers the site may have; at most max-peers."),
	settingUint("max-concurrent-upgrades", settingsUintRange{lo: 1, hi: 500},
		func(s *pb.Settings) *uint32 { return &s.MaxConcurrentUpgrades },
		"Peers that may be upgrading at the same time."),
	settingUpgradeBandwidth(),
	settingChoice("default-connection-type", []string{"", "active", "passive"},
		func(s *pb.Settings) *pb.ConnectionType { return &s.DefaultConnectionType },
		"Connection type of peers whose installer sets none: active (stays connected) or passive (waits to be woken)."),
	settingAllowWake(),
	settingUint("passive-idle-seconds", settingsUintRange{lo: 10, hi: 86400, unit: " seconds"},
		func(s *pb.Settings) *uint32 { return &s.PassiveIdleSeconds },
		"Seconds a passive peer stays connected without a session after it was woken, before it goes passive again."),
	settingNATPrediction(),
	settingNATProbing(),
	settingBulkConnections(),
}

// settingAllowWake is allow-wake, an optional bool: unset (a site made
// before it existed) means true.
func settingAllowWake() settingSpec {
	const key = "allow-wake"
	return settingSpec{
		key: key, rng: "true or false",
		desc: "Technicians may wake sleeping peers (Wake-on-LAN through a neighbour, jumpmesh wake, --wake); passive peers are woken whatever this says.",
		show: func(s *pb.Settings) string { return strconv.FormatBool(s.GetAllowWake()) },
		set: func(s *pb.Settings, v string) *catalog.Error {
			b, err := parseSettingBool(key, v)
			if err == nil {
				s.AllowWake = proto.Bool(b)
			}
			return err
		},
		fill: func(s, def *pb.Settings) {
			if s.AllowWake == nil {
				s.AllowWake = proto.Bool(def.GetAllowWake())
			}
		},
	}
}

// settingNATPrediction is nat-prediction, an optional bool: unset (a site
// made before it existed) means true.
func settingNATPrediction() settingSpec {
	const key = "nat-prediction"
	return settingSpec{
		key: key, rng: "true or false",
		desc: "Peers behind a NAT that gives each new flow the next port predict that port when hole punching (a fresh observation, then up to 6 candidate ports offered to the console); if false they offer only the mappings the coordinator and relays saw.",
		show: func(s *pb.Settings) string { return strconv.FormatBool(s.GetNatPrediction()) },
		set: func(s *pb.Settings, v string) *catalog.Error {
			b, err := parseSettingBool(key, v)
			if err == nil {
				s.NatPrediction = proto.Bool(b)
			}
			return err
		},
		fill: func(s, def *pb.Settings) {
			if s.NatPrediction == nil {
				s.NatPrediction = proto.Bool(def.GetNatPrediction())
			}
		},
	}
}

// settingNATProbing is nat-probing, an optional bool: unset (a site made
// before it existed) means true.
func settingNATProbing() settingSpec {
	const key = "nat-probing"
	return settingSpec{
		key: key, rng: "true or false",
		desc: "When a hole punch cannot work (one side's NAT maps every destination to a new random port), peers and consoles holding a grant probe for a port mapping over UDP (at most 256 + 1024 paced packets per try, 2 tries per relayed connection, only towards the console IP the coordinator signed in the grant); if false the connection stays relayed.",
		show: func(s *pb.Settings) string { return strconv.FormatBool(s.GetNatProbing()) },
		set: func(s *pb.Settings, v string) *catalog.Error {
			b, err := parseSettingBool(key, v)
			if err == nil {
				s.NatProbing = proto.Bool(b)
			}
			return err
		},
		fill: func(s, def *pb.Settings) {
			if s.NatProbing == nil {
				s.NatProbing = proto.Bool(def.GetNatProbing())
			}
		},
	}
}

// settingBulkConnections is bulk-connections, an optional bool: unset (a
// site made before it existed) means true.
func settingBulkConnections() settingSpec {
	const key = "bulk-connections"
	return settingSpec{
		key: key, rng: "true or false",
		desc: "On a direct TCP session connection, peers offer a forward a bulk connection of its own: a TCP listening port of the kernel's choosing on the peer's address, open only while offers are pending, taking only a one-time ticket and secret sent on the end-to-end encrypted channel; if false peers never open it and every forward stays on the session's channel.",
		show: func(s *pb.Settings) string { return strconv.FormatBool(s.GetBulkConnections()) },
		set: func(s *pb.Settings, v string) *catalog.Error {
			b, err := parseSettingBool(key, v)
			if err == nil {
				s.BulkConnections = proto.Bool(b)
			}
			return err
		},
		fill: func(s, def *pb.Settings) {
			if s.BulkConnections == nil {
				s.BulkConnections = proto.Bool(def.GetBulkConnections())
			}
		},
	}
}

// settingsUintRange bounds a whole-number setting. zero, when set, is the
// word shown for (and accepted as) 0.
type settingsUintRange struct {
	lo, hi uint32
	unit   string
	zero   string
}

func (r settingsUintRange) between() string {
	lo := strconv.Itoa(int(r.lo))
	if r.zero != "" && r.lo == 0 {
		lo += " (" + r.zero + ")"
	}
	return fmt.Sprintf("%s and %d%s", lo, r.hi, r.unit)
}

func settingUint(key string, r settingsUintRange, field func(*pb.Settings) *uint32, desc string) settingSpec {
	return settingSpec{
		key: key, desc: desc,
		rng: strings.Replace(r.between(), " and ", " to ", 1),
		show: func(s *pb.Settings) string {
			if v := *field(s); v != 0 || r.zero == "" {
				return strconv.FormatUint(uint64(v), 10)
			}
			return r.zero
		},
		set: func(s *pb.Settings, v string) *catalog.Error {
			if r.zero != "" && strings.EqualFold(v, r.zero) {
				*field(s) = 0
				return nil
			}
			n, err := strconv.ParseInt(v, 10, 64)
			switch {
			case errors.Is(err, strconv.ErrRange), err == nil && (n < 0 || n > math.MaxUint32):
				return settingsRangeError(key, r.between(), v)
			case err != nil:
				return catalog.Errorf(catalog.CodeInvalidArgument, "%s must be a whole number between %s (got %q).", key, r.between(), v)
			}
			*field(s) = uint32(n)
			return nil
		},
		check: func(s *pb.Settings) *catalog.Error {
			if v := *field(s); v < r.lo || v > r.hi {
				return settingsRangeError(key, r.between(), strconv.FormatUint(uint64(v), 10))
			}
			return nil
		},
		fill: func(s, def *pb.Settings) {
			if *field(s) == 0 && r.lo > 0 {
				*field(s) = *field(def)
			}
		},
	}
}

func settingBool(key string, field func(*pb.Settings) *bool, desc string) settingSpec {
	return settingSpec{
		key: key, desc: desc, rng: "true or false",
		show: func(s *pb.Settings) string { return strconv.FormatBool(*field(s)) },
		set: func(s *pb.Settings, v string) *catalog.Error {
			b, err := parseSettingBool(key, v)
			if err == nil {
				*field(s) = b
			}
			return err
		},
	}
}

// settingChoice is an enum setting; names[i] is the word for value i, and
// names[0] (UNSPECIFIED) is never valid.
func settingChoice[E ~int32](key string, names []string, field func(*pb.Settings) *E, desc string) settingSpec {
	choices := strings.Join(names[1:], " or ")
	return settingSpec{
		key: key, desc: desc, rng: choices,
		show: func(s *pb.Settings) string {
			if v := int(*field(s)); v > 0 && v < len(names) {
				return names[v]
			}
			return "unspecified"
		},
		set: func(s *pb.Settings, v string) *catalog.Error {
			for i, name := range names[1:] {
				if strings.EqualFold(v, name) {
					*field(s) = E(i + 1)
					return nil
				}
			}
			return catalog.Errorf(catalog.CodeInvalidArgument, "%s must be %s (got %q).", key, choices, v)
		},
		check: func(s *pb.Settings) *catalog.Error {
			if v := int(*field(s)); v <= 0 || v >= len(names) {
				return catalog.Errorf(catalog.CodeInvalidArgument, "%s must be %s (got value %d).", key, choices, v)
			}
			return nil
		},
		fill: func(s, def *pb.Settings) {
			if *field(s) == 0 {
				*field(s) = *field(def)
			}
		},
	}
}

func settingStatsInterval() settingSpec {
	const key, lo, hi = "stats-interval", 5, 3600
	return settingSpec{
		key: key, rng: "5s to 1h",
		desc: "How often active peers send their statistics; longer saves bandwidth on large sites.",
		show: func(s *pb.Settings) string { return formatInterval(s.StatsIntervalSeconds) },
		set: func(s *pb.Settings, v string) *catalog.Error {
			sec, err := parseInterval(key, v)
			if err == nil {
				s.StatsIntervalSeconds = sec
			}
			return err
		},
		check: func(s *pb.Settings) *catalog.Error {
			if v := s.StatsIntervalSeconds; v < lo || v > hi {
				return settingsRangeError(key, "5s and 1h", formatInterval(v))
			}
			return nil
		},
		fill: func(s, def *pb.Settings) {
			if s.StatsIntervalSeconds == 0 {
				s.StatsIntervalSeconds = def.StatsIntervalSeconds
			}
		},
	}
}

func settingUpgradeBandwidth() settingSpec {
	const key, lo, hi = "upgrade-bandwidth", settingsKiB, 100 * settingsMiB
	return settingSpec{
		key: key, rng: "1 KiB/s to 100 MiB/s",
		desc: "Bandwidth that all peer upgrades together may use.",
		show: func(s *pb.Settings) string { return formatBandwidth(s.UpgradeBandwidth) },
		set: func(s *pb.Settings, v string) *catalog.Error {
			b, err := parseBandwidth(key, v)
			if err == nil {
				s.UpgradeBandwidth = b
			}
			return err
		},
		check: func(s *pb.Settings) *catalog.Error {
			if v := s.UpgradeBandwidth; v < lo || v > hi {
				return settingsRangeError(key, "1 KiB/s and 100 MiB/s", formatBandwidth(v))
			}
			return nil
		},
		fill: func(s, def *pb.Settings) {
			if s.UpgradeBandwidth == 0 {
				s.UpgradeBandwidth = def.UpgradeBandwidth
			}
		},
	}
}
