package coordinator

import (
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // tests must not depend on the machine's zone files

	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

const (
	sun = 1 << time.Sunday
	mon = 1 << time.Monday
	tue = 1 << time.Tuesday
	wed = 1 << time.Wednesday
	thu = 1 << time.Thursday
	fri = 1 << time.Friday
	sat = 1 << time.Saturday
)

func TestParseWindow(t *testing.T) {
	tests := []struct {
		in        string
		days      uint32
		from, to  uint32
		canonical string
	}{
		{"mon-fri 09:00-17:00", mon | tue | wed | thu | fri, 540, 1020, "mon-fri 09:00-17:00"},
		{"sat,sun 10:00-12:30", sat | sun, 600, 750, "sat,sun 10:00-12:30"},
		{"mon,wed-fri 08:00-18:00", mon | wed | thu | fri, 480, 1080, "mon,wed-fri 08:00-18:00"},
		{"daily 00:00-24:00", allDays, 0, 1440, "daily 00:00-24:00"},
		{"weekdays 09:00-17:00", mon | tue | wed | thu | fri, 540, 1020, "mon-fri 09:00-17:00"},
		{"weekends 10:00-14:00", sat | sun, 600, 840, "sat,sun 10:00-14:00"},
		{"Monday-FRIDAY 9:00-17:00", mon | tue | wed | thu | fri, 540, 1020, "mon-fri 09:00-17:00"},
		{"fri-mon 08:00-18:00", fri | sat | sun | mon, 480, 1080, "fri-mon 08:00-18:00"},
		{"sun-sat 00:00-01:00", allDays, 0, 60, "daily 00:00-01:00"},
		{"wed-wed 12:00-13:00", wed, 720, 780, "wed 12:00-13:00"},
		{"mon, wed - fri 08:00-18:00", mon | wed | thu | fri, 480, 1080, "mon,wed-fri 08:00-18:00"},
		{"weekends,mon 23:59-24:00", sat | sun | mon, 1439, 1440, "sat-mon 23:59-24:00"},
		{"tue,thu,sat 06:00-07:00", tue | thu | sat, 360, 420, "tue,thu,sat 06:00-07:00"},
		{"  sunday   00:00-00:01 ", sun, 0, 1, "sun 00:00-00:01"},
	}
	for _, tt := range tests {
		w, err := ParseWindow(tt.in)
		if err != nil {
			t.Errorf("ParseWindow(%q): %v", tt.in, err)
			continue
		}
		if w.GetDays() != tt.days || w.GetFromMinute() != tt.from || w.GetToMinute() != tt.to {
			t.Errorf("ParseWindow(%q) = %07b %d-%d, want %07b %d-%d", tt.in,
				w.GetDays(), w.GetFromMinute(), w.GetToMinute(), tt.days, tt.from, tt.to)
		}
		if got := FormatWindow(w); got != tt.canonical {
			t.Errorf("FormatWindow(ParseWindow(%q)) = %q, want %q", tt.in, got, tt.canonical)
		}
	}
}

func TestParseWindowErrors(t *testing.T) {
	tests := []struct {
		in   string
		code catalog.Code
		want string
	}{
		{"", catalog.CodeInvalidArgument, "must be days then times"},
		{"09:00-17:00", catalog.CodeInvalidArgument, "must be days then times"},
		{"funday 09:00-17:00", catalog.CodeInvalidArgument, `Unknown day "funday"`},
		{"mon-xyz 09:00-17:00", catalog.CodeInvalidArgument, `Unknown day "xyz"`},
		{"mon,,fri 09:00-17:00", catalog.CodeInvalidArgument, `Unknown day ""`},
		{"mon wed 09:00-17:00", catalog.CodeInvalidArgument, `Unknown day "mon wed"`},
		{"mon 09:00", catalog.CodeInvalidArgument, "time range"},
		{"mon 9-17", catalog.CodeInvalidArgument, "HH:MM"},
		{"mon 09:0-17:00", catalog.CodeInvalidArgument, "HH:MM"},
		{"mon +9:00-17:00", catalog.CodeInvalidArgument, "HH:MM"},
		{"mon 25:00-26:00", catalog.CodeOutOfRange, "between 00:00 and 24:00"},
		{"mon 09:60-17:00", catalog.CodeOutOfRange, "between 00:00 and 24:00"},
		{"mon 09:00-24:01", catalog.CodeOutOfRange, "between 00:00 and 24:00"},
		{"mon 24:00-24:00", catalog.CodeInvalidArgument, "24:00 may only end a window"},
		{"mon 09:00-09:00", catalog.CodeInvalidArgument, "empty"},
		{"mon 22:00-06:00", catalog.CodeInvalidArgument, `crosses midnight; write it as two windows: "mon 22:00-24:00" and "tue 00:00-06:00"`},
		{"fri-sun 22:00-06:00", catalog.CodeInvalidArgument, `"fri-sun 22:00-24:00" and "sat-mon 00:00-06:00"`},
		{"daily 22:00-06:00", catalog.CodeInvalidArgument, `"daily 22:00-24:00" and "daily 00:00-06:00"`},
	}
	for _, tt := range tests {
		w, err := ParseWindow(tt.in)
		if err == nil {
			t.Errorf("ParseWindow(%q) = %v, want error", tt.in, w)
			continue
		}
		if catalog.CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseWindow(%q) error = %v (%s), want %s containing %q", tt.in, err, catalog.CodeOf(err), tt.code, tt.want)
		}
	}
}

// Every set of days and a few times survive a format/parse round trip.
func TestFormatWindowRoundTrip(t *testing.T) {
	for days := uint32(1); days <= allDays; days++ {
		for _, span := range [][2]uint32{{0, 1440}, {0, 1}, {1439, 1440}, {545, 1021}} {
			w := &pb.Window{Days: days, FromMinute: span[0], ToMinute: span[1]}
			s := FormatWindow(w)
			back, err := ParseWindow(s)
			if err != nil {
				t.Fatalf("ParseWindow(FormatWindow(%07b)) = ParseWindow(%q): %v", days, s, err)
			}
			if !proto.Equal(back, w) {
				t.Fatalf("round trip of %q gave %v, want %v", s, back, w)
			}
		}
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"business-hours", true},
		{"eu_ops.v2", true},
		{"9to5", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"Business", false},
		{"-hours", false},
		{".hidden", false},
		{"_x", false},
		{"with space", false},
		{"a/b", false},
		{"café", false},
	}
	for _, tt := range tests {
		err := ValidateName("jump policy", tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && (catalog.CodeOf(err) != catalog.CodeInvalidArgument || !strings.Contains(err.Error(), "jump policy name")) {
			t.Errorf("ValidateName(%q) error = %v, want invalid_argument naming the kind", tt.name, err)
		}
	}
}

func validPolicy() *pb.JumpPolicy {
	return &pb.JumpPolicy{
		Name:     "business-hours",
		TimeZone: "Europe/Paris",
		Windows:  []*pb.Window{{Days: mon | tue | wed | thu | fri, FromMinute: 540, ToMinute: 1020}},
	}
}

func TestValidateJumpPolicy(t *testing.T) {
	tests := []struct {
		name   string
		change func(p *pb.JumpPolicy)
		code   catalog.Code
		want   string
	}{
		{"valid", func(p *pb.JumpPolicy) {}, "", ""},
		{"utc", func(p *pb.JumpPolicy) { p.TimeZone = "UTC" }, "", ""},
		{"64 windows", func(p *pb.JumpPolicy) {
			for len(p.Windows) < 64 {
				p.Windows = append(p.Windows, p.Windows[0])
			}
		}, "", ""},
		{"description 1024", func(p *pb.JumpPolicy) { p.Description = strings.Repeat("é", 1024) }, "", ""},
		{"bad name", func(p *pb.JumpPolicy) { p.Name = "Business Hours" }, catalog.CodeInvalidArgument, "jump policy name"},
		{"no zone", func(p *pb.JumpPolicy) { p.TimeZone = "" }, catalog.CodeInvalidArgument, "must have a time zone"},
		{"unknown zone", func(p *pb.JumpPolicy) { p.TimeZone = "Mars/Olympus" }, catalog.CodeInvalidArgument, `"Mars/Olympus"`},
		{"local zone", func(p *pb.JumpPolicy) { p.TimeZone = "Local" }, catalog.CodeInvalidArgument, `"Local" is not allowed`},
		{"no windows", func(p *pb.JumpPolicy) { p.Windows = nil }, catalog.CodeOutOfRange, "between 1 and 64 windows (got 0)"},
		{"65 windows", func(p *pb.JumpPolicy) {
			for len(p.Windows) < 65 {
				p.Windows = append(p.Windows, p.Windows[0])
			}
		}, catalog.CodeOutOfRange, "(got 65)"},
		{"description 1025", func(p *pb.JumpPolicy) { p.Description = strings.Repeat("x", 1025) }, catalog.CodeOutOfRange, "at most 1024 characters (got 1025)"},
		{"no days", func(p *pb.JumpPolicy) { p.Windows[0].Days = 0 }, catalog.CodeInvalidArgument, "window 1: A window must name at least one day"},
		{"bad days", func(p *pb.JumpPolicy) { p.Windows[0].Days = 0x80 }, catalog.CodeInvalidArgument, "bits 0 (Sunday) to 6 (Saturday)"},
		{"past midnight", func(p *pb.JumpPolicy) { p.Windows[0].ToMinute = 1441 }, catalog.CodeOutOfRange, "at or before 24:00"},
		{"backwards", func(p *pb.JumpPolicy) { p.Windows[0].FromMinute = 1020 }, catalog.CodeInvalidArgument, "end after it starts"},
	}
	for _, tt := range tests {
		p := validPolicy()
		tt.change(p)
		err := ValidateJumpPolicy(p)
		if catalog.CodeOf(err) != tt.code || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: ValidateJumpPolicy = %v, want code %q containing %q", tt.name, err, tt.code, tt.want)
		}
	}
}

func TestValidateSessionPolicy(t *testing.T) {
	if err := ValidateSessionPolicy(&pb.SessionPolicy{Name: "read-only", Shell: true}); err != nil {
		t.Errorf("valid policy: %v", err)
	}
	err := ValidateSessionPolicy(&pb.SessionPolicy{Name: "Read Only"})
	if !catalog.HasCode(err, catalog.CodeInvalidArgument) || !strings.Contains(err.Error(), "session policy name") {
		t.Errorf("bad name: %v", err)
	}
	err = ValidateSessionPolicy(&pb.SessionPolicy{Name: "ro", Description: strings.Repeat("x", 1025)})
	if !catalog.HasCode(err, catalog.CodeOutOfRange) {
		t.Errorf("long description: %v", err)
	}
}

func TestJumpPolicyAllows(t *testing.T) {
	utc := func(s string) time.Time {
		t.Helper()
		tm, err := time.Parse("2006-01-02 15:04:05", s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	policy := func(zone string, windows ...string) *pb.JumpPolicy {
		p := &pb.JumpPolicy{Name: "p", TimeZone: zone}
		for _, s := range windows {
			w, err := ParseWindow(s)
			if err != nil {
				t.Fatal(err)
			}
			p.Windows = append(p.Windows, w)
		}
		return p
	}
	paris9to5 := policy("Europe/Paris", "sun 09:00-17:00")
	parisNight := policy("Europe/Paris", "sun 02:00-03:00")
	nyEarly := policy("America/New_York", "sun 01:00-04:00")
	nyGap := policy("America/New_York", "sun 02:00-03:00")
	nyRepeat := policy("America/New_York", "sun 01:00-02:00")
	fullFriday := policy("Europe/Paris", "fri 00:00-24:00")
	tests := []struct {
		name string
		p    *pb.JumpPolicy
		utc  string
		want bool
	}{
		// Paris, winter (UTC+1) the week before the change.
		{"paris CET start", paris9to5, "2024-03-24 08:00:00", true},
		{"paris CET before", paris9to5, "2024-03-24 07:59:59", false},
		// 2024-03-31: clocks go from 02:00 CET to 03:00 CEST (UTC+2).
		{"paris CEST start", paris9to5, "2024-03-31 07:00:00", true},
		{"paris CEST before", paris9to5, "2024-03-31 06:59:00", false},
		{"paris CEST last minute", paris9to5, "2024-03-31 14:59:59", true},
		{"paris CEST end", paris9to5, "2024-03-31 15:00:00", false},
		{"paris skipped hour", parisNight, "2024-03-31 01:00:00", false}, // 03:00 CEST
		// 2024-10-27: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
		{"paris first 02:30", parisNight, "2024-10-27 00:30:00", true},
		{"paris second 02:30", parisNight, "2024-10-27 01:30:00", true},
		{"paris after repeat", parisNight, "2024-10-27 02:00:00", false},
		{"paris saturday UTC", parisNight, "2024-10-26 23:59:00", false}, // Sun 01:59 CEST
		// New York 2024-03-10: 02:00 EST jumps to 03:00 EDT.
		{"ny 01:59 EST", nyEarly, "2024-03-10 06:59:00", true},
		{"ny 03:00 EDT", nyEarly, "2024-03-10 07:00:00", true},
		{"ny 04:00 EDT", nyEarly, "2024-03-10 08:00:00", false},
		{"ny gap before", nyGap, "2024-03-10 06:59:00", false},
		{"ny gap after", nyGap, "2024-03-10 07:00:00", false},
		// New York 2024-11-03: 02:00 EDT goes back to 01:00 EST.
		{"ny first 01:30", nyRepeat, "2024-11-03 05:30:00", true},
		{"ny second 01:30", nyRepeat, "2024-11-03 06:30:00", true},
		{"ny 02:00 EST", nyRepeat, "2024-11-03 07:00:00", false},
		// The local weekday counts, not the UTC one.
		{"ny saturday night UTC sunday", nyRepeat, "2024-11-03 04:59:00", false}, // Sun 00:59 EDT
		{"paris utc friday is saturday", fullFriday, "2024-06-07 22:00:00", false},
		// 24:00 includes the day's last minute.
		{"24:00 last second", fullFriday, "2024-06-07 21:59:59", true},
		{"24:00 first second", fullFriday, "2024-06-06 22:00:00", true},
	}
	for _, tt := range tests {
		got, err := JumpPolicyAllows(tt.p, utc(tt.utc))
		if err != nil || got != tt.want {
			t.Errorf("%s: JumpPolicyAllows(%s at %s UTC) = %v, %v; want %v", tt.name,
				FormatWindow(tt.p.Windows[0]), tt.utc, got, err, tt.want)
		}
	}
	if _, err := JumpPolicyAllows(policy("Nowhere/Land", "daily 00:00-24:00"), time.Now()); !catalog.HasCode(err, catalog.CodeInvalidArgument) {
		t.Errorf("unknown zone: err = %v, want invalid_argument", err)
	}
}
