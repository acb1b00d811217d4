package scenario

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

func TestParseWakeSteps(t *testing.T) {
	head := "name: x\nnetworks: [{name: n, nat: easy}]\nhosts:\n" +
		"  - {name: c, network: n, role: coordinator}\n  - {name: p, network: n, role: peer}\n  - {name: l, network: n, role: console}\n"
	sc, err := Parse([]byte(head + `steps:
  - init
  - suspend p --password 01-02-03-04-05-06
  - expect-asleep p for 5s
  - expect-awake p within 20s
  - expect-no-wake-sent p
  - expect-wake-sent p within 10s
  - console: wake p --json
    expect-code: wake_cooldown
    expect-stderr: s left
    within: 40s
`))
	if err != nil {
		t.Fatal(err)
	}
	st := sc.Steps
	if !reflect.DeepEqual(st[1].Args, []string{"p", "--password", "01-02-03-04-05-06"}) || st[3].Within != 20*time.Second ||
		st[5].Within != 10*time.Second || st[6].ExpectCode != "wake_cooldown" || st[6].ExpectStderr != "s left" || st[6].Within != 40*time.Second {
		t.Fatalf("steps: %+v", st)
	}
	for _, tc := range []struct{ yaml, want string }{
		{head + "steps: [init, suspend c]", "c is a coordinator, not a peer"},
		{head + "steps: [suspend p]", "comes before init"},
		{head + "steps: [init, suspend p --password]", "suspend PEER [--password"},
		{head + "steps: [init, suspend p --password 12345]", "six hexadecimal bytes"},
		{head + "steps: [init, expect-asleep p during 5s]", "expect-asleep PEER for D"},
		{head + "steps: [init, expect-asleep p for ever]", "expect-asleep PEER for D"},
		{head + "steps: [init, expect-no-wake-sent l]", "l is a console"},
		{head + "steps: [init, {console: wake p, expect-code: wake_snoozed}]", "not a code of the error catalog"},
		{head + "steps: [init, {exec: p -- true, expect-code: wake_cooldown}]", "for console steps"},
		{head + "steps: [init, {install: p, expect-exit: 1}]", "expect-exit is for exec and console"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestAuditWakers(t *testing.T) {
	for detail, want := range map[string][]string{
		"wakers: peer-a2 (peer), j-1 (jumpoint); 5 sent": {"peer-a2", "j-1"},
		"wakers: none; 0 sent":                           nil,
		"peer-a1: The peer is offline.":                  nil,
		"wakers: a (peer) wake_failed":                   {"a"},
	} {
		if got := auditWakers(detail); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %q, want %q", detail, got, want)
		}
	}
}

// TestCommandCode: a failed command's code comes from its --json error, or
// from the catalog message its stderr holds.
func TestCommandCode(t *testing.T) {
	cooldown := catalog.CodeWakeCooldown
	for _, tc := range []struct {
		res  cmdResult
		want catalog.Code
	}{
		{cmdResult{stdout: `{"error": {"code": "wake_cooldown", "message": "x", "detail": "(12 s left)"}}`}, cooldown},
		{cmdResult{stderr: "jumpmesh: " + cooldown.Message() + " (12 s left)\n"}, cooldown},
		{cmdResult{stderr: "jumpmesh: something else\n"}, ""},
	} {
		if got := commandCode(tc.res); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.res, got, tc.want)
		}
	}
	if d := failureDetail(cmdResult{stdout: `{"error": {"code": "wake_cooldown", "message": "M", "detail": "(12 s left)"}}`}); !strings.Contains(d, "(12 s left)") {
		t.Errorf("detail %q", d)
	}
}

// TestNoteWakeCommand: the runner notes wake, and jump/forward/cp with
// --wake, naming the first peer among the words before "--"; a step that
// tries again keeps only its latest try.
func TestNoteWakeCommand(t *testing.T) {
	r := &runner{sc: &Scenario{Hosts: []Host{{Name: "p", Role: RolePeer}, {Name: "q", Role: RolePeer}, {Name: "l", Role: RoleConsole}}},
		wake: &wakeLab{}}
	r.noteWakeCommand(1, []string{"ls", "p"})
	r.noteWakeCommand(2, []string{"jump", "p", "--", "wake", "q"})
	r.noteWakeCommand(3, []string{"wake", "--password", "01-02-03-04-05-06", "p"})
	r.noteWakeCommand(4, []string{"cp", "--wake", "/tmp/x", "q:/tmp/y"})
	r.noteWakeCommand(5, []string{"jump", "--wake", "q", "--", "echo", "p"})
	r.noteWakeCommand(6, []string{"wake", "p"})
	r.noteWakeCommand(6, []string{"wake", "p"})
	var got []string
	for _, c := range r.wake.cmds {
		got = append(got, fmt.Sprintf("%d %s", c.line, c.target))
	}
	if want := []string{"3 p", "4 q", "5 q", "6 p"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("noted %q, want %q", got, want)
	}
}
