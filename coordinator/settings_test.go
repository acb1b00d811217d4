package coordinator

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func TestSettingsDefaultsValid(t *testing.T) {
	if err := ValidateSettings(DefaultSettings()); err != nil {
		t.Fatalf("defaults are not valid: %v", err)
	}
	if !proto.Equal(SettingsWithDefaults(nil), DefaultSettings()) {
		t.Fatalf("SettingsWithDefaults(nil) differs from DefaultSettings()")
	}
	if err := ValidateSettings(nil); !catalog.HasCode(err, catalog.CodeInvalidArgument) {
		t.Fatalf("ValidateSettings(nil) = %v, want invalid_argument", err)
	}
}

func TestSettingsWithDefaultsKeepsMeaningfulZeros(t *testing.T) {
	in := &pb.Settings{LostAfterDays: 40, MaxPeers: 0, ConcurrentJumps: false}
	got := SettingsWithDefaults(in)
	want := DefaultSettings()
	want.LostAfterDays = 40
	want.ConcurrentJumps = false // a stored false is a choice, not "unset"
	if !proto.Equal(got, want) {
		t.Fatalf("SettingsWithDefaults = %v, want %v", got, want)
	}
	if in.DeleteAfterDays != 0 {
		t.Fatalf("SettingsWithDefaults modified its argument")
	}
}

// Every numeric key accepts its bounds and refuses one step beyond, with a
// message naming the range.
func TestSettingsBounds(t *testing.T) {
	tests := []struct {
		key                string
		lo, hi, below, top string
		between            string
	}{
		{"lost-after-days", "15", "179", "14", "", "between 15 and 3650 days"},
		{"delete-after-days", "31", "3650", "", "3651", "between 15 and 3650 days"},
		{"connection-rate", "1", "300", "0", "301", "between 1 and 300 per second"},
		{"max-session-starts", "1", "1000", "0", "1001", "between 1 and 1000"},
		{"passive-port", "1", "65535", "0", "65536", "between 1 and 65535"},
		{"stats-interval", "5s", "1h", "4s", "3601s", "between 5s and 1h"},
		{"max-peers", "0", "10000000", "", "10000001", "between 0 (unlimited) and 10000000"},
		{"max-active-peers", "0", "10000000", "", "10000001", "between 0 (unlimited) and 10000000"},
		{"max-concurrent-upgrades", "1", "500", "0", "501", "between 1 and 500"},
		{"upgrade-bandwidth", "1KiB/s", "100MiB/s", "1023", "104857601", "between 1 KiB/s and 100 MiB/s"},
		{"passive-idle-seconds", "10", "86400", "9", "86401", "between 10 and 86400 seconds"},
	}
	for _, tt := range tests {
		for _, v := range []string{tt.lo, tt.hi} {
			if _, err := ApplySettings(DefaultSettings(), map[string]string{tt.key: v}); err != nil {
				t.Errorf("%s=%s refused: %v", tt.key, v, err)
			}
		}
		for _, v := range []string{tt.below, tt.top} {
			if v == "" {
				continue
			}
			_, err := ApplySettings(DefaultSettings(), map[string]string{tt.key: v})
			if !catalog.HasCode(err, catalog.CodeOutOfRange) || !strings.Contains(err.Error(), tt.key+" must be "+tt.between) {
				t.Errorf("%s=%s: err = %v, want out_of_range naming %q", tt.key, v, err, tt.between)
			}
		}
	}
	// The horizons' own bounds, away from the lost < delete rule.
	both := map[string]string{"lost-after-days": "15", "delete-after-days": "3650"}
	if _, err := ApplySettings(nil, both); err != nil {
		t.Errorf("lost=15 delete=3650: %v", err)
	}
	both = map[string]string{"lost-after-days": "3649", "delete-after-days": "3650"}
	if _, err := ApplySettings(nil, both); err != nil {
		t.Errorf("lost=3649 delete=3650: %v", err)
	}
	both = map[string]string{"lost-after-days": "14", "delete-after-days": "15"}
	_, err := ApplySettings(nil, both)
	if got := err.Error(); !strings.Contains(got, "lost-after-days must be between 15 and 3650 days (got 14).") ||
		strings.Contains(got, "less than") {
		t.Errorf("lost=14 delete=15: %v", err)
	}
}

func TestSettingsLostBeforeDelete(t *testing.T) {
	for _, values := range []map[string]string{
		{"lost-after-days": "90", "delete-after-days": "60"},
		{"delete-after-days": "60", "lost-after-days": "90"},
		{"lost-after-days": "60", "delete-after-days": "60"},
		{"lost-after-days": "200"}, // against the default delete-after-days of 180
		{"delete-after-days": "20"},
	} {
		_, err := ApplySettings(DefaultSettings(), values)
		if !catalog.HasCode(err, catalog.CodeOutOfRange) || !strings.Contains(err.Error(), "must be less than delete-after-days") {
			t.Errorf("%v: err = %v, want lost < delete error", values, err)
		}
	}
	// Moving both horizons at once is fine even if each alone would break the rule.
	cur := DefaultSettings()
	next, err := ApplySettings(cur, map[string]string{"lost-after-days": "400", "delete-after-days": "500"})
	if err != nil || next.LostAfterDays != 400 || next.DeleteAfterDays != 500 {
		t.Fatalf("lost=400 delete=500: %v, %v", next, err)
	}
}

func TestSettingsActiveNotAboveTotal(t *testing.T) {
	tests := []struct {
		values map[string]string
		ok     bool
	}{
		{map[string]string{"max-peers": "100", "max-active-peers": "100"}, true},
		{map[string]string{"max-peers": "100", "max-active-peers": "0"}, true},
		{map[string]string{"max-peers": "unlimited", "max-active-peers": "5000"}, true},
		{map[string]string{"max-peers": "100", "max-active-peers": "101"}, false},
		{map[string]string{"max-active-peers": "101", "max-peers": "100"}, false},
	}
	for _, tt := range tests {
		_, err := ApplySettings(nil, tt.values)
		if tt.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "must not exceed max-peers")) {
			t.Errorf("%v: err = %v, want ok=%v", tt.values, err, tt.ok)
		}
	}
}

func TestSettingsParse(t *testing.T) {
	tests := []struct {
		key, value string
		get        func(*pb.Settings) any
		want       any
	}{
		{"concurrent-jumps", "no", func(s *pb.Settings) any { return s.ConcurrentJumps }, false},
		{"concurrent-jumps", "ON", func(s *pb.Settings) any { return s.ConcurrentJumps }, true},
		{"restrict-local-uninstall", "1", func(s *pb.Settings) any { return s.RestrictLocalUninstall }, true},
		{"restrict-local-uninstall", "yes", func(s *pb.Settings) any { return s.RestrictLocalUninstall }, true},
		{"uninstalled-behavior", "Remove", func(s *pb.Settings) any { return s.UninstalledBehavior }, pb.UninstalledBehavior_UNINSTALLED_BEHAVIOR_REMOVE},
		{"default-connection-type", "passive", func(s *pb.Settings) any { return s.DefaultConnectionType }, pb.ConnectionType_CONNECTION_TYPE_PASSIVE},
		{"stats-interval", "5m", func(s *pb.Settings) any { return s.StatsIntervalSeconds }, uint32(300)},
		{"stats-interval", "1m30s", func(s *pb.Settings) any { return s.StatsIntervalSeconds }, uint32(90)},
		{"upgrade-bandwidth", "25MiB/s", func(s *pb.Settings) any { return s.UpgradeBandwidth }, uint64(25 << 20)},
		{"upgrade-bandwidth", "25MiB", func(s *pb.Settings) any { return s.UpgradeBandwidth }, uint64(25 << 20)},
		{"upgrade-bandwidth", "512KiB/s", func(s *pb.Settings) any { return s.UpgradeBandwidth }, uint64(512 << 10)},
		{"upgrade-bandwidth", "1048576", func(s *pb.Settings) any { return s.UpgradeBandwidth }, uint64(1 << 20)},
		{"upgrade-bandwidth", "1.5 mib/s", func(s *pb.Settings) any { return s.UpgradeBandwidth }, uint64(3 << 19)},
		{"upgrade-bandwidth", "2048B/s", func(s *pb.Settings) any { return s.UpgradeBandwidth }, uint64(2048)},
		{"max-peers", "unlimited", func(s *pb.Settings) any { return s.MaxPeers }, uint32(0)},
		{"passive-port", " 6000 ", func(s *pb.Settings) any { return s.PassivePort }, uint32(6000)},
	}
	for _, tt := range tests {
		s, err := ApplySettings(DefaultSettings(), map[string]string{tt.key: tt.value})
		if err != nil {
			t.Errorf("%s=%q: %v", tt.key, tt.value, err)
			continue
		}
		if got := tt.get(s); got != tt.want {
			t.Errorf("%s=%q gave %v, want %v", tt.key, tt.value, got, tt.want)
		}
	}
}

func TestSettingsParseErrors(t *testing.T) {
	tests := []struct {
		key, value string
		code       catalog.Code
		want       string
	}{
		{"concurrent-jumps", "maybe", catalog.CodeInvalidArgument, `concurrent-jumps must be true or false`},
		{"restrict-local-uninstall", "", catalog.CodeInvalidArgument, `(got "")`},
		{"uninstalled-behavior", "delete", catalog.CodeInvalidArgument, `uninstalled-behavior must be mark or remove (got "delete")`},
		{"default-connection-type", "hybrid", catalog.CodeInvalidArgument, `active or passive`},
		{"lost-after-days", "thirty", catalog.CodeInvalidArgument, `lost-after-days must be a whole number between 15 and 3650 days (got "thirty")`},
		{"lost-after-days", "-1", catalog.CodeOutOfRange, `(got -1)`},
		{"passive-port", "99999999999999999999", catalog.CodeOutOfRange, `between 1 and 65535`},
		{"stats-interval", "60", catalog.CodeInvalidArgument, `duration with a unit`},
		{"stats-interval", "1.5s", catalog.CodeInvalidArgument, `whole number of seconds`},
		{"stats-interval", "-5s", catalog.CodeOutOfRange, `between 5s and 1h (got -5s)`},
		{"upgrade-bandwidth", "25MB/s", catalog.CodeInvalidArgument, `units are B, KiB, MiB and GiB`},
		{"upgrade-bandwidth", "fast", catalog.CodeInvalidArgument, `(got "fast")`},
		{"upgrade-bandwidth", "1GiB/s", catalog.CodeOutOfRange, `(got 1024 MiB/s)`},
		{"upgrade-bandwidth", "99999999999999999999999GiB", catalog.CodeOutOfRange, `between 1 KiB/s and 100 MiB/s`},
	}
	for _, tt := range tests {
		s, err := ApplySettings(DefaultSettings(), map[string]string{tt.key: tt.value})
		if s != nil || catalog.CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s=%q: %v, %v; want %s containing %q", tt.key, tt.value, s, err, tt.code, tt.want)
		}
	}
}

func TestSettingsUnknownKey(t *testing.T) {
	_, err := ApplySettings(nil, map[string]string{"lost-days": "30", "colour": "blue"})
	if !catalog.HasCode(err, catalog.CodeInvalidArgument) {
		t.Fatalf("err = %v, want invalid_argument", err)
	}
	msg := err.Error()
	for _, want := range []string{`Unknown setting "colour", "lost-days"`, strings.Join(SettingKeys(), ", ")} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
}

func TestSettingsSeveralErrors(t *testing.T) {
	cur := DefaultSettings()
	before := proto.Clone(cur)
	next, err := ApplySettings(cur, map[string]string{
		"connection-rate":   "0",
		"concurrent-jumps":  "perhaps",
		"lost-after-days":   "200",
		"upgrade-bandwidth": "1",
		"bogus":             "x",
	})
	if next != nil || err == nil {
		t.Fatalf("ApplySettings = %v, %v; want error", next, err)
	}
	if !proto.Equal(cur, before) {
		t.Fatalf("cur was modified: %v", cur)
	}
	msg := err.Error()
	wants := []string{"5 settings problems", `"bogus"`, "connection-rate must be between 1 and 300",
		"concurrent-jumps must be true or false", "upgrade-bandwidth must be between", "must be less than delete-after-days"}
	for _, want := range wants {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if catalog.CodeOf(err) != catalog.CodeInvalidArgument { // mixed codes
		t.Errorf("code = %s, want invalid_argument", catalog.CodeOf(err))
	}
	// Each problem stays reachable for Go callers, and the wire form keeps them all.
	if !errors.Is(err, catalog.NewError(catalog.CodeOutOfRange)) {
		t.Errorf("errors.Is(out_of_range) = false")
	}
	if d := catalog.ErrorToPB(err).GetDetail(); !strings.Contains(d, "connection-rate") || !strings.Contains(d, "bogus") {
		t.Errorf("wire detail lost problems: %q", d)
	}
	// Same-code problems keep their code.
	_, err = ApplySettings(cur, map[string]string{"connection-rate": "0", "passive-port": "0"})
	if catalog.CodeOf(err) != catalog.CodeOutOfRange || !strings.Contains(err.Error(), "2 settings problems") {
		t.Errorf("two range errors: %v (%s)", err, catalog.CodeOf(err))
	}
}

func TestSettingsApplyDoesNotModifyCur(t *testing.T) {
	cur := DefaultSettings()
	next, err := ApplySettings(cur, map[string]string{"connection-rate": "100"})
	if err != nil || next.ConnectionRate != 100 || cur.ConnectionRate != 50 {
		t.Fatalf("next=%v cur=%v err=%v", next, cur, err)
	}
}

func TestSettingsTable(t *testing.T) {
	rows := SettingsTable(nil)
	if len(rows) != len(SettingKeys()) {
		t.Fatalf("%d rows for %d keys", len(rows), len(SettingKeys()))
	}
	wantOrder := []string{"lost-after-days", "delete-after-days", "connection-rate", "max-session-starts", "max-session-starts-per-technician",
		"concurrent-jumps", "passive-port", "stats-interval", "uninstalled-behavior", "restrict-local-uninstall",
		"max-peers", "max-active-peers", "max-concurrent-upgrades", "upgrade-bandwidth", "default-connection-type",
		"allow-wake", "passive-idle-seconds", "nat-prediction", "nat-probing", "bulk-connections"}
	wantValue := map[string]string{
		"stats-interval": "60s", "upgrade-bandwidth": "10 MiB/s", "max-peers": "unlimited",
		"uninstalled-behavior": "mark", "concurrent-jumps": "true", "lost-after-days": "30",
		"default-connection-type": "active", "passive-port": "5832",
		"allow-wake": "true", "passive-idle-seconds": "900", "nat-prediction": "true",
		"nat-probing": "true", "bulk-connections": "true",
	}
	values := make(map[string]string)
	for i, row := range rows {
		if row.Key != wantOrder[i] {
			t.Errorf("row %d is %s, want %s", i, row.Key, wantOrder[i])
		}
		if row.Value != row.Default || row.Range == "" || row.Description == "" {
			t.Errorf("row %+v is incomplete", row)
		}
		if w, ok := wantValue[row.Key]; ok && row.Value != w {
			t.Errorf("%s shows %q, want %q", row.Key, row.Value, w)
		}
		values[row.Key] = row.Value
	}
	// What the table shows can be typed back.
	custom, err := ApplySettings(nil, map[string]string{"stats-interval": "90s", "upgrade-bandwidth": "1536", "max-peers": "7"})
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range SettingsTable(custom) {
		values[row.Key] = row.Value
	}
	back, err := ApplySettings(nil, values)
	if err != nil || !proto.Equal(back, custom) {
		t.Fatalf("table values did not round-trip: %v, %v (want %v)", back, err, custom)
	}
}

// nat-prediction is an optional bool: a site stored before it existed
// predicts; false is kept; anything but a bool is refused.
func TestSettingsNATPredictionUnsetIsTrue(t *testing.T) {
	if !SettingsWithDefaults(&pb.Settings{LostAfterDays: 40}).GetNatPrediction() {
		t.Fatal("unset nat-prediction read as false, want true")
	}
	off, err := ApplySettings(nil, map[string]string{"nat-prediction": "false"})
	if err != nil || off.NatPrediction == nil || off.GetNatPrediction() || SettingsWithDefaults(off).GetNatPrediction() {
		t.Fatalf("nat-prediction=false: %v, %v", off.GetNatPrediction(), err)
	}
	if _, err := ApplySettings(nil, map[string]string{"nat-prediction": "sometimes"}); !catalog.HasCode(err, catalog.CodeInvalidArgument) {
		t.Fatalf("nat-prediction=sometimes: %v", err)
	}
}

// bulk-connections is an optional bool: a site stored before it existed
// has bulk connections on; false is kept, and nothing else changes with it.
func TestSettingsBulkConnectionsUnsetIsTrue(t *testing.T) {
	if !SettingsWithDefaults(&pb.Settings{LostAfterDays: 40, NatProbing: proto.Bool(false)}).GetBulkConnections() {
		t.Fatal("unset bulk-connections read as false, want true")
	}
	off, err := ApplySettings(nil, map[string]string{"bulk-connections": "false"})
	if err != nil || off.BulkConnections == nil || off.GetBulkConnections() || SettingsWithDefaults(off).GetBulkConnections() || !off.GetNatProbing() {
		t.Fatalf("bulk-connections=false: %v (nat-probing %v), %v", off.GetBulkConnections(), off.GetNatProbing(), err)
	}
	if _, err := ApplySettings(nil, map[string]string{"bulk-connections": "sometimes"}); !catalog.HasCode(err, catalog.CodeInvalidArgument) {
		t.Fatalf("bulk-connections=sometimes: %v", err)
	}
}

// nat-probing is an optional bool: a site stored before it existed
// probes; false is kept; anything but a bool is refused.
func TestSettingsNATProbingUnsetIsTrue(t *testing.T) {
	if !SettingsWithDefaults(&pb.Settings{LostAfterDays: 40, NatPrediction: proto.Bool(false)}).GetNatProbing() {
		t.Fatal("unset nat-probing read as false, want true")
	}
	off, err := ApplySettings(nil, map[string]string{"nat-probing": "false"})
	if err != nil || off.NatProbing == nil || off.GetNatProbing() || SettingsWithDefaults(off).GetNatProbing() || !off.GetNatPrediction() {
		t.Fatalf("nat-probing=false: %v (nat-prediction %v), %v", off.GetNatProbing(), off.GetNatPrediction(), err)
	}
	if _, err := ApplySettings(nil, map[string]string{"nat-probing": "often"}); !catalog.HasCode(err, catalog.CodeInvalidArgument) {
		t.Fatalf("nat-probing=often: %v", err)
	}
}

// allow-wake is an optional bool: a site stored before it existed allows
// waking; a stored false is kept.
func TestSettingsAllowWakeUnsetIsTrue(t *testing.T) {
	if got := SettingsWithDefaults(&pb.Settings{LostAfterDays: 40}); !got.GetAllowWake() || got.GetPassiveIdleSeconds() != 900 {
		t.Fatalf("unset allow-wake / passive-idle-seconds read as %v / %d, want true / 900", got.GetAllowWake(), got.GetPassiveIdleSeconds())
	}
	off, err := ApplySettings(nil, map[string]string{"allow-wake": "no"})
	if err != nil || off.AllowWake == nil || off.GetAllowWake() {
		t.Fatalf("allow-wake=no: %v, %v", off.AllowWake, err)
	}
	if SettingsWithDefaults(off).GetAllowWake() {
		t.Fatal("a stored false became true")
	}
	if _, err := ApplySettings(nil, map[string]string{"allow-wake": "maybe"}); !catalog.HasCode(err, catalog.CodeInvalidArgument) {
		t.Fatalf("allow-wake=maybe: %v", err)
	}
}
