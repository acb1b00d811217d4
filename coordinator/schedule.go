package coordinator

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

// Limits of policies. They keep a policy small enough to read in one screen
// and to check on every jump without thinking about cost.
const (
	MaxCodeNameLen    = 64
	MaxDescriptionLen = 1024
	MaxPolicyWindows  = 64
)

const (
	minutesPerDay = 24 * 60
	allDays       = 1<<7 - 1
	weekdayDays   = allDays &^ (1<<time.Sunday | 1<<time.Saturday)
	weekendDays   = 1<<time.Sunday | 1<<time.Saturday
)

var dayNames = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// nameRE is compiled at its first use: every jumpmesh process, a jump's
// included, initialises this package (issue 17).
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`) })

// ValidateName checks the name of a policy or similar object. kind names
// the object in the error ("jump policy"). Names are restricted so that they
// can be typed on a command line and used in store keys without quoting.
func ValidateName(kind, name string) error {
	switch {
	case name == "":
		return catalog.Errorf(catalog.CodeInvalidArgument, "%s name must not be empty.", kind)
	case len(name) > MaxCodeNameLen:
		return catalog.Errorf(catalog.CodeInvalidArgument, "%s name must be 1 to %d characters long (got %d).", kind, MaxCodeNameLen, len(name))
	case !nameRE().MatchString(name):
		return catalog.Errorf(catalog.CodeInvalidArgument,
			"%s name %q may only use a-z, 0-9, '_', '.' and '-', and must start with a letter or digit.", kind, name)
	}
	return nil
}

func validateDescription(kind, name, desc string) error {
	if n := utf8.RuneCountInString(desc); n > MaxDescriptionLen {
		return catalog.Errorf(catalog.CodeOutOfRange, "%s %q: description must be at most %d characters (got %d).", kind, name, MaxDescriptionLen, n)
	}
	return nil
}

// ValidateSessionPolicy checks a session policy's name and description.
func ValidateSessionPolicy(p *pb.SessionPolicy) error {
	if err := ValidateName("session policy", p.GetName()); err != nil {
		return err
	}
	if err := validateDescription("session policy", p.GetName(), p.GetDescription()); err != nil {
		return err
	}
	return peerproto.ValidateAllowCommands(p)
}

// ValidateJumpPolicy checks a jump policy: name, description, time zone and
// windows.
func ValidateJumpPolicy(p *pb.JumpPolicy) error {
	if err := ValidateName("jump policy", p.GetName()); err != nil {
		return err
	}
	if err := validateDescription("jump policy", p.GetName(), p.GetDescription()); err != nil {
		return err
	}
	if _, err := policyLocation(p); err != nil {
		return err
	}
	ws := p.GetWindows()
	if len(ws) == 0 || len(ws) > MaxPolicyWindows {
		return catalog.Errorf(catalog.CodeOutOfRange, "jump policy %q must have between 1 and %d windows (got %d).", p.GetName(), MaxPolicyWindows, len(ws))
	}
	for i, w := range ws {
		if err := ValidateWindow(w); err != nil {
			return catalog.Errorf(catalog.CodeOf(err), "jump policy %q, window %d: %s", p.GetName(), i+1, err.(*catalog.Error).Detail)
		}
	}
	return nil
}

// ValidateWindow checks one window as stored (ParseWindow only makes valid
// ones). Its errors are always *Error.
func ValidateWindow(w *pb.Window) error {
	switch {
	case w.GetDays() == 0:
		return catalog.Errorf(catalog.CodeInvalidArgument, "A window must name at least one day.")
	case w.GetDays() > allDays:
		return catalog.Errorf(catalog.CodeInvalidArgument, "A window's days must only use bits 0 (Sunday) to 6 (Saturday) (got %#x).", w.GetDays())
	case w.GetToMinute() > minutesPerDay:
		return catalog.Errorf(catalog.CodeOutOfRange, "A window must end at or before 24:00 (got minute %d).", w.GetToMinute())
	case w.GetFromMinute() >= w.GetToMinute():
		return catalog.Errorf(catalog.CodeInvalidArgument, "A window must end after it starts (got minute %d to minute %d).", w.GetFromMinute(), w.GetToMinute())
	}
	return nil
}

// JumpPolicyAllows reports whether t falls inside one of p's windows. Windows
// are wall-clock times in the policy's zone, so t is converted there first:
// on a DST change day a 09:00-17:00 window is still 09:00 to 17:00 local.
func JumpPolicyAllows(p *pb.JumpPolicy, t time.Time) (bool, error) {
	loc, err := policyLocation(p)
	if err != nil {
		return false, err
	}
	lt := t.In(loc)
	day := uint32(1) << lt.Weekday()
	minute := uint32(lt.Hour()*60 + lt.Minute())
	for _, w := range p.GetWindows() {
		if w.GetDays()&day != 0 && minute >= w.GetFromMinute() && minute < w.GetToMinute() {
			return true, nil
		}
	}
	return false, nil
}

// locations caches loaded zones: time.LoadLocation reads and parses the zone
// file on every call, and policies are checked on every jump.
var locations sync.Map // string → *time.Location

func policyLocation(p *pb.JumpPolicy) (*time.Location, error) {
	tz := p.GetTimeZone()
	if l, ok := locations.Load(tz); ok {
		return l.(*time.Location), nil
	}
	switch tz {
	case "":
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "jump policy %q must have a time zone, such as \"Europe/Paris\" or \"UTC\".", p.GetName())
	case "Local":
		// "Local" would mean whatever zone the coordinator happens to run in.
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "jump policy %q: time zone \"Local\" is not allowed; name the zone, such as \"Europe/Paris\".", p.GetName())
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "jump policy %q: unknown time zone %q; use an IANA name such as \"Europe/Paris\" or \"UTC\".", p.GetName(), tz)
	}
	locations.Store(tz, loc)
	return loc, nil
}

// ParseWindow reads a window such as "mon-fri 09:00-17:00",
// "sat,sun 10:00-12:30", "fri-mon 08:00-18:00" or "daily 00:00-24:00".
func ParseWindow(s string) (*pb.Window, error) {
	fields := strings.Fields(s)
	if len(fields) < 2 {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "Window %q must be days then times, such as \"mon-fri 09:00-17:00\".", s)
	}
	days, err := parseDays(strings.Join(fields[:len(fields)-1], " "), s)
	if err != nil {
		return nil, err
	}
	from, to, err := parseTimes(fields[len(fields)-1], s)
	if err != nil {
		return nil, err
	}
	if to < from {
		return nil, crossesMidnight(days, from, to, s)
	}
	if to == from {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "Window %q is empty: it must end after it starts.", s)
	}
	return &pb.Window{Days: days, FromMinute: from, ToMinute: to}, nil
}

func crossesMidnight(days, from, to uint32, s string) error {
	next := (days<<1 | days>>6) & allDays // each day's following day
	return catalog.Errorf(catalog.CodeInvalidArgument,
		"Window %q crosses midnight; write it as two windows: %q and %q.", s,
		FormatWindow(&pb.Window{Days: days, FromMinute: from, ToMinute: minutesPerDay}),
		FormatWindow(&pb.Window{Days: next, FromMinute: 0, ToMinute: to}))
}

// parseDays reads a comma-separated list of days, day ranges (which may wrap
// around the week: "fri-mon") and the words daily, weekdays and weekends.
func parseDays(spec, window string) (uint32, error) {
	var days uint32
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		switch item {
		case "daily":
			days |= allDays
			continue
		case "weekdays":
			days |= weekdayDays
			continue
		case "weekends":
			days |= weekendDays
			continue
		}
		first, last, isRange := strings.Cut(item, "-")
		a, err := parseDay(first, window)
		if err != nil {
			return 0, err
		}
		b := a
		if isRange {
			if b, err = parseDay(last, window); err != nil {
				return 0, err
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			days |= 1 << d
			if d == b {
				break
			}
		}
	}
	return days, nil
}

func parseDay(s, window string) (int, error) {
	s = strings.TrimSpace(s)
	for i, name := range dayNames {
		if s == name || s == strings.ToLower(time.Weekday(i).String()) {
			return i, nil
		}
	}
	return 0, catalog.Errorf(catalog.CodeInvalidArgument,
		"Unknown day %q in window %q; use sun, mon, tue, wed, thu, fri, sat (or full names), ranges such as mon-fri, daily, weekdays or weekends.", s, window)
}

func parseTimes(spec, window string) (from, to uint32, err error) {
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, catalog.Errorf(catalog.CodeInvalidArgument, "Window %q must give a time range such as 09:00-17:00 (got %q).", window, spec)
	}
	if from, err = parseClock(a, window); err != nil {
		return 0, 0, err
	}
	if from == minutesPerDay {
		return 0, 0, catalog.Errorf(catalog.CodeInvalidArgument, "Window %q starts at 24:00; 24:00 may only end a window (start at 00:00 instead).", window)
	}
	to, err = parseClock(b, window)
	return from, to, err
}

// parseClock reads "HH:MM" (or "H:MM") from 00:00 to 24:00 as minutes.
func parseClock(s, window string) (uint32, error) {
	hs, ms, ok := strings.Cut(s, ":")
	if !ok || !isDigits(hs, 1, 2) || !isDigits(ms, 2, 2) {
		return 0, catalog.Errorf(catalog.CodeInvalidArgument, "Time %q in window %q must be written HH:MM, such as 09:00.", s, window)
	}
	h, _ := strconv.Atoi(hs)
	m, _ := strconv.Atoi(ms)
	if h > 24 || m > 59 || (h == 24 && m != 0) {
		return 0, catalog.Errorf(catalog.CodeOutOfRange, "Time %q in window %q must be between 00:00 and 24:00.", s, window)
	}
	return uint32(h*60 + m), nil
}

func isDigits(s string, minLen, maxLen int) bool {
	if len(s) < minLen || len(s) > maxLen {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// FormatWindow writes w in the form ParseWindow reads, days first in the
// week starting on Monday, consecutive days collapsed into ranges.
func FormatWindow(w *pb.Window) string {
	return formatDays(w.GetDays()) + " " + formatClock(w.GetFromMinute()) + "-" + formatClock(w.GetToMinute())
}

func formatClock(min uint32) string { return fmt.Sprintf("%02d:%02d", min/60, min%60) }

func formatDays(days uint32) string {
	days &= allDays
	if days == allDays {
		return "daily"
	}
	if days == 0 {
		return "never"
	}
	has := func(d int) bool { return days&(1<<((d+7)%7)) != 0 }
	// Start on Monday, or earlier if Monday is inside a run that wraps
	// around the week, so "fri-mon" stays one range.
	start := int(time.Monday)
	for has(start) && has(start-1) {
		start = (start + 6) % 7
	}
	var parts []string
	for i := 0; i < 7; i++ {
		d := (start + i) % 7
		if !has(d) {
			continue
		}
		n := 1
		for i+n < 7 && has(start+i+n) {
			n++
		}
		parts = append(parts, formatRun(d, n))
		i += n - 1
	}
	return strings.Join(parts, ",")
}

// formatRun writes n consecutive days from d: a range from three days on,
// since "sat,sun" reads better than "sat-sun".
func formatRun(d, n int) string {
	switch n {
	case 1:
		return dayNames[d]
	case 2:
		return dayNames[d] + "," + dayNames[(d+1)%7]
	}
	return dayNames[d] + "-" + dayNames[(d+n-1)%7]
}
