package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Jump policies (when) and session policies (what) share one definition of
// their commands, policyKind: the same five verbs, the same create/update
// semantics and the same output. Each kind gives its fields, flags, words
// and client calls.

const policyEnforcement = "Policies are enforced when a jump is granted, and are referenced by name from installer\n" +
	"keys, which give each peer its jump policy and its session policies. A policy that a live\n" +
	"installer key references cannot be deleted."

// policyKind is one kind of policy as the CLI sees it. P is its message, V
// its view: what --json prints and what the text output is made from.
type policyKind[P, V any] struct {
	command, noun, plural string // jump-policy, jump policy, jump policies
	usage, description    string
	example               string // a policy name for the show and delete examples
	showUsage             string
	create, update        verbText
	// updateFlags are the flags update changes, in the order its "nothing
	// to change" error names them.
	updateFlags []string
	newFlags    func() policyFlags[P]

	get  func(*console.Client, context.Context, string) (P, error)
	list func(*console.Client, context.Context) ([]P, error)
	put  func(c *console.Client, ctx context.Context, p P, create bool) (P, error)
	del  func(*console.Client, context.Context, string) error

	view     func(P) V
	text     func(io.Writer, V) // one policy, for create, update and show
	listHead []string
	listRow  func(V) []string
}

// verbText is a verb's help: its one-line usage and its usage text with
// examples.
type verbText struct{ usage, text string }

// policyFlags are create's and update's flags of one kind; each command
// gets its own.
type policyFlags[P any] interface {
	flags() []cli.Flag
	// build is the new policy NAME that create's flags describe.
	build(cc *cli.Context, name string) (P, error)
	// apply changes the fields of p whose flags were given.
	apply(cc *cli.Context, p P) error
}

func (k policyKind[P, V]) cliCommand() *cli.Command {
	return &cli.Command{
		Name: k.command, Usage: k.usage, Description: k.description,
		Subcommands: []*cli.Command{k.createCommand(), k.updateCommand(), k.listCommand(), k.showCommand(), k.deleteCommand()},
	}
}

func (k policyKind[P, V]) print(cc *cli.Context, p P) error {
	v := k.view(p)
	return output(cc, v, func(w io.Writer) { k.text(w, v) })
}

func (k policyKind[P, V]) createCommand() *cli.Command {
	f := k.newFlags()
	return &cli.Command{
		Name: "create", Usage: k.create.usage, ArgsUsage: "NAME", UsageText: k.create.text, Flags: f.flags(),
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			p, err := f.build(cc, cc.Args().First())
			if err != nil {
				return err
			}
			saved, err := k.put(c, ctx, p, true)
			if err != nil {
				return err
			}
			return k.print(cc, saved)
		}),
	}
}

func (k policyKind[P, V]) updateCommand() *cli.Command {
	f := k.newFlags()
	return &cli.Command{
		Name: "update", Usage: k.update.usage, ArgsUsage: "NAME", UsageText: k.update.text, Flags: f.flags(),
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			if !slices.ContainsFunc(k.updateFlags, cc.IsSet) {
				return usagef("%s update: nothing to change; give %s", k.command, flagChoice(k.updateFlags))
			}
			// Read-modify-write: flags not given keep their stored values.
			p, err := k.get(c, ctx, cc.Args().First())
			if err != nil {
				return err
			}
			if err := f.apply(cc, p); err != nil {
				return err
			}
			saved, err := k.put(c, ctx, p, false)
			if err != nil {
				return err
			}
			return k.print(cc, saved)
		}),
	}
}

// flagChoice is "--a, --b or --c".
func flagChoice(names []string) string {
	flags := make([]string, len(names))
	for i, n := range names {
		flags[i] = "--" + n
	}
	if len(flags) < 2 {
		return strings.Join(flags, "")
	}
	return strings.Join(flags[:len(flags)-1], ", ") + " or " + flags[len(flags)-1]
}

func (k policyKind[P, V]) listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list " + k.plural,
		UsageText: fmt.Sprintf("jumpmesh %s list [--json]\n\nExample:\n  jumpmesh %[1]s list", k.command),
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(0, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			policies, err := k.list(c, ctx)
			if err != nil {
				return err
			}
			views := make([]V, 0, len(policies))
			for _, p := range policies {
				views = append(views, k.view(p))
			}
			return output(cc, views, func(w io.Writer) {
				rows := [][]string{k.listHead}
				for _, v := range views {
					rows = append(rows, k.listRow(v))
				}
				table(w, rows)
			})
		}),
	}
}

func (k policyKind[P, V]) showCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     k.showUsage,
		ArgsUsage: "NAME",
		UsageText: fmt.Sprintf("jumpmesh %s show NAME [--json]\n\nExample:\n  jumpmesh %[1]s show %s", k.command, k.example),
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			p, err := k.get(c, ctx, cc.Args().First())
			if err != nil {
				return err
			}
			return k.print(cc, p)
		}),
	}
}

func (k policyKind[P, V]) deleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete a " + k.noun + " (refused while a live installer key names it)",
		ArgsUsage: "NAME",
		UsageText: fmt.Sprintf("jumpmesh %s delete NAME [--json]\n\nExample:\n  jumpmesh %[1]s delete %s", k.command, k.example),
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			name := cc.Args().First()
			if err := k.del(c, ctx, name); err != nil {
				return err
			}
			return output(cc, map[string]string{"deleted": name}, func(w io.Writer) { fmt.Fprintf(w, "Deleted %s %s.\n", k.noun, name) })
		}),
	}
}

func jumpPolicyCommand() *cli.Command {
	return policyKind[*pb.JumpPolicy, jumpPolicyView]{
		command: "jump-policy", noun: "jump policy", plural: "jump policies",
		usage: "manage jump policies: when peers may be jumped to (admins change them; anyone may read)",
		description: "A jump policy is a weekly schedule in a time zone: peers under it may only be jumped to\n" +
			"inside one of its windows. Windows are written \"DAYS HH:MM-HH:MM\", where DAYS is a day\n" +
			"(mon), a range (mon-fri, fri-mon), a list (sat,sun), daily, weekdays or weekends; a\n" +
			"window ends at or before 24:00, so a night shift is two windows. Times are wall-clock\n" +
			"times in the policy's zone, across daylight-saving changes too.\n\n" + policyEnforcement,
		example:   "office-hours",
		showUsage: "show a jump policy's time zone and windows",
		create: verbText{"create a jump policy",
			"jumpmesh jump-policy create NAME --tz ZONE --window \"DAYS HH:MM-HH:MM\" [--window ...] [--description TEXT]\n\n" +
				"Examples:\n" +
				"  jumpmesh jump-policy create office-hours --tz Europe/Paris --window \"mon-fri 09:00-17:00\"\n" +
				"  jumpmesh jump-policy create night --tz UTC --window \"daily 22:00-24:00\" --window \"daily 00:00-06:00\""},
		update: verbText{"change a jump policy's zone, windows or description (--window replaces all windows)",
			"jumpmesh jump-policy update NAME [--tz ZONE] [--window \"DAYS HH:MM-HH:MM\" ...] [--description TEXT]\n\n" +
				"Examples:\n" +
				"  jumpmesh jump-policy update office-hours --tz America/New_York\n" +
				"  jumpmesh jump-policy update office-hours --window \"mon-thu 08:00-18:00\" --window \"fri 08:00-12:00\""},
		updateFlags: []string{"tz", "window", "description"},
		newFlags:    func() policyFlags[*pb.JumpPolicy] { return new(jumpPolicyFlags) },
		get:         (*console.Client).JumpPolicy,
		list:        (*console.Client).JumpPolicies,
		put:         (*console.Client).PutJumpPolicy,
		del:         (*console.Client).DeleteJumpPolicy,
		view:        newJumpPolicyView,
		text: func(w io.Writer, v jumpPolicyView) {
			fields(w, "jump policy", v.Name, "description", orDash(v.Description), "time zone", v.TimeZone)
			fmt.Fprintln(w, "windows:")
			for _, win := range v.Windows {
				fmt.Fprintf(w, "  %s\n", win)
			}
		},
		listHead: []string{"NAME", "TIME ZONE", "WINDOWS", "DESCRIPTION"},
		listRow: func(v jumpPolicyView) []string {
			return []string{v.Name, v.TimeZone, strings.Join(v.Windows, "; "), orDash(v.Description)}
		},
	}.cliCommand()
}

// windowList collects repeated --window flags. cli.StringSliceFlag would
// split "sat,sun 10:00-12:00" at its comma, which is part of the window.
type windowList []string

func (l *windowList) Set(s string) error { *l = append(*l, s); return nil }
func (l *windowList) String() string     { return strings.Join(*l, "; ") }

type jumpPolicyFlags struct {
	tz, description string
	windows         windowList
}

func (f *jumpPolicyFlags) flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tz", Aliases: []string{"time-zone"}, Destination: &f.tz, Usage: "IANA time zone of the windows, such as Europe/Paris or UTC"},
		&cli.GenericFlag{Name: "window", Value: &f.windows, Usage: "a weekly window such as \"mon-fri 09:00-17:00\" (repeatable)"},
		&cli.StringFlag{Name: "description", Destination: &f.description, Usage: "what the policy is for"},
		jsonFlag,
	}
}

func parseWindows(specs []string) ([]*pb.Window, error) {
	out := make([]*pb.Window, 0, len(specs))
	for _, s := range specs {
		w, err := coordinator.ParseWindow(s)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

type jumpPolicyView struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	TimeZone    string   `json:"time_zone"`
	Windows     []string `json:"windows"`
}

func newJumpPolicyView(p *pb.JumpPolicy) jumpPolicyView {
	v := jumpPolicyView{Name: p.GetName(), Description: p.GetDescription(), TimeZone: p.GetTimeZone(), Windows: []string{}}
	for _, w := range p.GetWindows() {
		v.Windows = append(v.Windows, coordinator.FormatWindow(w))
	}
	return v
}

func (f *jumpPolicyFlags) build(_ *cli.Context, name string) (*pb.JumpPolicy, error) {
	if f.tz == "" || len(f.windows) == 0 {
		return nil, usagef("jump-policy create needs --tz ZONE and at least one --window, such as --tz UTC --window \"mon-fri 09:00-17:00\"")
	}
	windows, err := parseWindows(f.windows)
	if err != nil {
		return nil, err
	}
	return &pb.JumpPolicy{Name: name, Description: f.description, TimeZone: f.tz, Windows: windows}, nil
}

func (f *jumpPolicyFlags) apply(cc *cli.Context, p *pb.JumpPolicy) error {
	if cc.IsSet("tz") {
		p.TimeZone = f.tz
	}
	if cc.IsSet("window") {
		windows, err := parseWindows(f.windows)
		if err != nil {
			return err
		}
		p.Windows = windows
	}
	if cc.IsSet("description") {
		p.Description = f.description
	}
	return nil
}

func sessionPolicyCommand() *cli.Command {
	return policyKind[*pb.SessionPolicy, sessionPolicyView]{
		command: "session-policy", noun: "session policy", plural: "session policies",
		usage: "manage session policies: what a session may do (admins change them; anyone may read)",
		description: "A session policy lists the capabilities a session to a peer may use: shell (interactive\n" +
			"shell), exec (run a command), forward (port forwarding) and file-transfer (copy files with\n" +
			"jumpmesh cp; --allow also takes cp for it), and whether the user at the host must consent\n" +
			"first. An installer names one policy for when a user is present at the host and one for\n" +
			"when none is.\n\n" + commandsHelp + "\n\n" + policyEnforcement,
		example:   "attended",
		showUsage: "show a session policy",
		create: verbText{"create a session policy (by default it allows everything)",
			"jumpmesh session-policy create NAME [--allow shell,exec,forward,file-transfer | --allow all | --allow none]\n" +
				"    [--allow-command PATTERN]... [--require-consent] [--description TEXT]\n\n" +
				"Examples:\n" +
				"  jumpmesh session-policy create monitoring --allow exec --allow-command uptime --allow-command 'systemctl status *'\n" +
				"  jumpmesh session-policy create full\n" +
				"  jumpmesh session-policy create attended --allow shell,file-transfer --require-consent\n" +
				"  jumpmesh session-policy create copy-only --allow cp"},
		update: verbText{"change a session policy's capabilities, consent or description (--allow replaces all capabilities)",
			"jumpmesh session-policy update NAME [--allow ...] [--allow-command PATTERN]... [--any-command]\n" +
				"    [--require-consent[=false]] [--description TEXT]\n\n" +
				"Examples:\n" +
				"  jumpmesh session-policy update monitoring --allow-command 'df -h' --allow-command uptime\n" +
				"  jumpmesh session-policy update monitoring --any-command\n" +
				"  jumpmesh session-policy update attended --allow shell,exec\n" +
				"  jumpmesh session-policy update attended --require-consent=false"},
		updateFlags: []string{"allow", "allow-command", "any-command", "require-consent", "description"},
		newFlags:    func() policyFlags[*pb.SessionPolicy] { return new(sessionPolicyFlags) },
		get:         (*console.Client).SessionPolicy,
		list:        (*console.Client).SessionPolicies,
		put:         (*console.Client).PutSessionPolicy,
		del:         (*console.Client).DeleteSessionPolicy,
		view:        newSessionPolicyView,
		text: func(w io.Writer, v sessionPolicyView) {
			fields(w, "session policy", v.Name, "description", orDash(v.Description),
				"allows", v.allowed(), "commands", v.commandsText(), "requires consent", yesNo(v.RequireConsent))
		},
		listHead: []string{"NAME", "SHELL", "EXEC", "FORWARD", "FILES", "CONSENT"},
		listRow: func(v sessionPolicyView) []string {
			return []string{v.Name, yesNo(v.Shell), yesNo(v.Exec), yesNo(v.Forward), yesNo(v.FileTransfer), yesNo(v.RequireConsent)}
		},
	}.cliCommand()
}

type sessionPolicyFlags struct {
	requireConsent bool
	description    string
	allowCommands  repeatedFlag
	anyCommand     bool
}

// repeatedFlag collects every value of a repeated flag as given: unlike
// urfave/cli's string slices it does not split on commas, which a command
// line may hold.
type repeatedFlag []string

func (r *repeatedFlag) Set(v string) error { *r = append(*r, v); return nil }
func (r *repeatedFlag) String() string     { return strings.Join(*r, " | ") }

// commandsHelp says what --allow-command means and where its limits are
// written.
const commandsHelp = "With exec, --allow-command limits the commands a session may run (without a PTY; a command\n" +
	"in a PTY, jump -t, needs shell). Each PATTERN is matched against the whole command line, its\n" +
	"words joined by single spaces; * stands for any run of characters. Repeat the flag for more.\n" +
	"The list says which programs start, not what they do: allowing sh, python3 *, find * or cat *\n" +
	"allows a shell or any file (mesh/peerproto/peerproto.go lists the limits). Under a list the console may\n" +
	"not set the command's environment."

func (f *sessionPolicyFlags) flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "allow", Usage: "capabilities: any of shell, exec, forward, file-transfer (alias cp) (comma-separated or repeated), or all, or none"},
		&cli.BoolFlag{Name: "require-consent", Destination: &f.requireConsent, Usage: "the user at the host must accept each session"},
		&cli.StringFlag{Name: "description", Destination: &f.description, Usage: "what the policy is for"},
		&cli.GenericFlag{Name: "allow-command", Value: &f.allowCommands,
			Usage: "with exec: a command line exec may run, * for any characters (repeat; replaces the list)"},
		&cli.BoolFlag{Name: "any-command", Destination: &f.anyCommand, Usage: "with exec: any command may run (removes the --allow-command list)"},
		jsonFlag,
	}
}

func (f *sessionPolicyFlags) build(cc *cli.Context, name string) (*pb.SessionPolicy, error) {
	p := &pb.SessionPolicy{Name: name, Description: f.description, RequireConsent: f.requireConsent}
	allow := []string{"all"}
	if cc.IsSet("allow") {
		allow = cc.StringSlice("allow")
	}
	if err := applyAllow(p, allow); err != nil {
		return nil, err
	}
	if err := f.applyCommands(cc, p); err != nil {
		return nil, err
	}
	return p, nil
}

func (f *sessionPolicyFlags) apply(cc *cli.Context, p *pb.SessionPolicy) error {
	if cc.IsSet("allow") {
		if err := applyAllow(p, cc.StringSlice("allow")); err != nil {
			return err
		}
	}
	if err := f.applyCommands(cc, p); err != nil {
		return err
	}
	if cc.IsSet("require-consent") {
		p.RequireConsent = f.requireConsent
	}
	if cc.IsSet("description") {
		p.Description = f.description
	}
	return nil
}

// applyCommands sets p's command allow-list from the flags.
func (f *sessionPolicyFlags) applyCommands(cc *cli.Context, p *pb.SessionPolicy) error {
	switch {
	case cc.IsSet("allow-command") && f.anyCommand:
		return usagef("give --allow-command or --any-command, not both")
	case cc.IsSet("allow-command"):
		p.AllowCommands = slices.Clone(f.allowCommands)
	case f.anyCommand:
		p.AllowCommands = nil
	}
	return nil
}

const capabilityWords = "shell, exec, forward, file-transfer (or cp, the command that uses it), all or none"

// applyAllow sets p's capabilities from the --allow values, replacing the
// old ones. Mistakes are usage errors: the list of words is short and fixed.
func applyAllow(p *pb.SessionPolicy, values []string) error {
	p.Shell, p.Exec, p.Forward, p.FileTransfer = false, false, false, false
	var words []string
	for _, v := range values {
		for _, w := range strings.Split(v, ",") {
			if w = strings.ToLower(strings.TrimSpace(w)); w != "" {
				words = append(words, w)
			}
		}
	}
	if len(words) == 0 {
		return usagef("--allow needs capabilities: %s", capabilityWords)
	}
	for _, w := range words {
		switch w {
		case "shell":
			p.Shell = true
		case "exec":
			p.Exec = true
		case "forward":
			p.Forward = true
		case "file-transfer", "cp": // cp: the technician's command that needs it
			p.FileTransfer = true
		case "all":
			p.Shell, p.Exec, p.Forward, p.FileTransfer = true, true, true, true
		case "none":
			if len(words) > 1 {
				return usagef("--allow none cannot be combined with other capabilities")
			}
		default:
			return usagef("unknown capability %q in --allow; valid capabilities are %s", w, capabilityWords)
		}
	}
	return nil
}

type sessionPolicyView struct {
	Name           string `json:"name"`
	Description    string `json:"description"`
	Shell          bool   `json:"shell"`
	Exec           bool   `json:"exec"`
	Forward        bool   `json:"forward"`
	FileTransfer   bool   `json:"file_transfer"`
	RequireConsent bool   `json:"require_consent"`
	// AllowCommands is the exec allow-list; empty: any command.
	AllowCommands []string `json:"allow_commands,omitempty"`
}

func newSessionPolicyView(p *pb.SessionPolicy) sessionPolicyView {
	return sessionPolicyView{Name: p.GetName(), Description: p.GetDescription(), Shell: p.GetShell(), Exec: p.GetExec(),
		Forward: p.GetForward(), FileTransfer: p.GetFileTransfer(), RequireConsent: p.GetRequireConsent(), AllowCommands: p.GetAllowCommands()}
}

// allowed is the --allow form of v's capabilities.
func (v sessionPolicyView) allowed() string {
	var out []string
	for _, c := range []struct {
		on   bool
		name string
	}{{v.Shell, "shell"}, {v.Exec, "exec"}, {v.Forward, "forward"}, {v.FileTransfer, "file-transfer"}} {
		if c.on {
			out = append(out, c.name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// commandsText is what exec may run under v.
func (v sessionPolicyView) commandsText() string {
	switch {
	case !v.Exec:
		return "-"
	case len(v.AllowCommands) == 0:
		return "any"
	}
	return strings.Join(v.AllowCommands, " | ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
