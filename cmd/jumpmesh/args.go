package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// reorderArgs lets flags follow positional arguments, as users type them
// ("jumpmesh user invite alice --role admin"): urfave/cli v2 stops reading
// flags at the first positional argument, so the leaf command's flags are
// moved in front of its positionals. Everything after "--" is left alone.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	cmds, flags := app.Commands, app.Flags
	for len(rest) > 0 {
		tok := rest[0]
		if isFlag(tok) {
			n := flagTokens(tok, rest, flags)
			out, rest = append(out, rest[:n]...), rest[n:]
			continue
		}
		sub := findCommand(cmds, tok)
		if sub == nil && tok == "help" {
			// `jumpmesh help [CMD...]` is `jumpmesh [CMD...] --help`, as
			// in git and go (the list does not offer it: HideHelpCommand);
			// `help NOSUCH` reports NOSUCH as the unknown command.
			rest = slices.Clone(rest[1:])
			if len(rest) == 0 || findCommand(cmds, rest[0]) != nil {
				rest = append(rest, "--help")
			}
			continue
		}
		if sub == nil {
			break
		}
		out, rest = append(out, tok), rest[1:]
		cmds, flags = sub.Subcommands, sub.Flags
		if len(cmds) == 0 {
			break
		}
	}
	var fl, pos []string
	for len(rest) > 0 {
		tok := rest[0]
		// After its PEER, jump still takes its own flags, as ssh does after
		// the host, but the first other word starts the remote command:
		// `jump web-01 -v ls -t` runs `ls -t` verbosely.
		if tok == "--" || (commandTail[leafName(out)] && len(pos) > 0 && !knownFlag(tok, flags)) {
			pos = append(pos, rest...)
			break
		}
		// A dash-token that is not one of the command's flags is an
		// argument: `jumpmesh ls -status:offline` negates a search term.
		if isFlag(tok) && (knownFlag(tok, flags) || tok == "-h" || tok == "--help") {
			n := flagTokens(tok, rest, flags)
			fl, rest = append(fl, rest[:n]...), rest[n:]
			continue
		}
		pos, rest = append(pos, tok), rest[1:]
	}
	out = append(out, fl...)
	if len(pos) > 0 && pos[0] != "--" {
		out = append(out, "--")
	}
	return append(out, pos...)
}

func isFlag(tok string) bool { return len(tok) > 1 && tok[0] == '-' && tok != "--" }

// flagTokens is how many tokens the flag at rest[0] takes: one for booleans
// and --name=value, two for flags with a separate value.
func flagTokens(tok string, rest []string, flags []cli.Flag) int {
	name := strings.TrimLeft(tok, "-")
	if strings.Contains(name, "=") {
		return 1
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if _, isBool := f.(*cli.BoolFlag); isBool {
				return 1
			}
			if len(rest) > 1 {
				return 2
			}
			return 1
		}
	}
	if name == "help" || name == "h" {
		return 1
	}
	return 1
}

// commandTail lists the commands whose arguments after the first are a
// command line of their own.
var commandTail = map[string]bool{"jump": true}

func leafName(args []string) string { return args[len(args)-1] }

func knownFlag(tok string, flags []cli.Flag) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(tok, "-"), "=")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
