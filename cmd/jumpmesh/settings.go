package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func settingsCommand() *cli.Command {
	return &cli.Command{
		Name:  "settings",
		Usage: "show the site settings, or change them (admins)",
		Description: "Site settings are edited as KEY=VALUE pairs; values are written the way `settings show`\n" +
			"prints them. lost-after-days must stay below delete-after-days, and max-active-peers may not\n" +
			"exceed max-peers (0 = unlimited). A set is applied whole or not at all.\n" +
			"The keys, their ranges and their defaults:\n\n" + settingsKeyList(),
		Subcommands: []*cli.Command{settingsShowCommand(), settingsSetCommand()},
	}
}

// settingsKeyList is the help text's list of keys. It is built from the
// coordinator's own table so that help can never disagree with what the
// coordinator accepts. Every jumpmesh process builds it (newApp), so it
// asks for the table of no stored settings, the defaults as they are:
// a table of DefaultSettings() cloned them, and the first proto.Clone of a
// process builds the message's reflection (0.4 ms of each jump's start,
// issue 17).
func settingsKeyList() string {
	var rows [][]string
	for _, s := range coordinator.SettingsTable(nil) {
		rows = append(rows, []string{"  " + s.Key, s.Range, "(default " + s.Default + ")"})
	}
	var b strings.Builder
	table(&b, rows)
	return strings.TrimRight(b.String(), "\n")
}

// settingInfoView is the --json --verbose shape of one setting.
type settingInfoView struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	Default     string `json:"default"`
	Range       string `json:"range"`
	Description string `json:"description"`
}

// settingsFlags are shared by show and set: set prints the new settings the
// way show does.
type settingsFlags struct{ verbose bool }

func (f *settingsFlags) flags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Destination: &f.verbose, Usage: "also describe each setting"},
		jsonFlag,
	}
}

// printSettings writes the settings table. With --json it writes an object
// of key → value (the form `settings set` reads), and with --verbose too
// {"values": {...}, "details": [...]} so that scripts get the ranges and
// defaults without parsing text.
func printSettings(cc *cli.Context, s *pb.Settings, verbose bool) error {
	values, details, text := settingsOutput(s, verbose)
	var v any = values
	if verbose {
		v = struct {
			Values  map[string]string `json:"values"`
			Details []settingInfoView `json:"details"`
		}{values, details}
	}
	return output(cc, v, text)
}

// printSettingsSet writes what settings set did: the settings as show
// writes them, and how many online peers the coordinator is telling. With
// --json: {"values": {...}, "peers_told": N}, and "details" with --verbose.
func printSettingsSet(cc *cli.Context, r console.SettingsSet, verbose bool) error {
	values, details, text := settingsOutput(r.Settings, verbose)
	if !verbose {
		details = nil
	}
	v := struct {
		Values    map[string]string `json:"values"`
		Details   []settingInfoView `json:"details,omitempty"`
		PeersTold int               `json:"peers_told"`
	}{values, details, r.PeersTold}
	return output(cc, v, func(w io.Writer) {
		text(w)
		fmt.Fprintf(w, "\ntold %d online peers (they get the new settings in the background)\n", r.PeersTold)
	})
}

// settingsOutput is the settings as --json writes them (values, and
// details for --verbose) and as the table prints them.
func settingsOutput(s *pb.Settings, verbose bool) (map[string]string, []settingInfoView, func(io.Writer)) {
	infos := coordinator.SettingsTable(s)
	values := make(map[string]string, len(infos))
	details := make([]settingInfoView, 0, len(infos))
	for _, i := range infos {
		values[i.Key] = i.Value
		details = append(details, settingInfoView{Key: i.Key, Value: i.Value, Default: i.Default, Range: i.Range, Description: i.Description})
	}
	return values, details, func(w io.Writer) {
		header := []string{"KEY", "VALUE", "DEFAULT", "RANGE"}
		if verbose {
			header = append(header, "DESCRIPTION")
		}
		rows := [][]string{header}
		for _, i := range infos {
			row := []string{i.Key, i.Value, i.Default, i.Range}
			if verbose {
				row = append(row, i.Description)
			}
			rows = append(rows, row)
		}
		table(w, rows)
	}
}

func settingsShowCommand() *cli.Command {
	var f settingsFlags
	return &cli.Command{
		Name:  "show",
		Usage: "show the site settings with their defaults and ranges",
		UsageText: "jumpmesh settings show [-v|--verbose] [--json]\n\n" +
			"Examples:\n" +
			"  jumpmesh settings show\n" +
			"  jumpmesh settings show --verbose",
		Flags: f.flags(),
		Action: clientAction(0, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			s, err := c.Settings(ctx)
			if err != nil {
				return err
			}
			return printSettings(cc, s, f.verbose)
		}),
	}
}

func settingsSetCommand() *cli.Command {
	var f settingsFlags
	return &cli.Command{
		Name:      "set",
		Usage:     "change site settings: all of the given keys, or none of them",
		ArgsUsage: "KEY=VALUE [KEY=VALUE ...]",
		UsageText: "jumpmesh settings set KEY=VALUE [KEY=VALUE ...] [-v|--verbose] [--json]\n\n" +
			"Prints the settings and how many online peers are told; they get the new settings\n" +
			"after the answer (--json: {\"values\": {...}, \"peers_told\": N}).\n\n" +
			"Examples:\n" +
			"  jumpmesh settings set lost-after-days=45 delete-after-days=90\n" +
			"  jumpmesh settings set upgrade-bandwidth=25MiB/s concurrent-jumps=false",
		Flags: f.flags(),
		Action: func(cc *cli.Context) error {
			// Typing mistakes are usage errors, found before dialing anything.
			values, err := settingsValues(cc.Args().Slice())
			if err != nil {
				return err
			}
			return clientAction(-1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
				r, err := c.SetSettingsTold(ctx, values)
				if err != nil {
					return err
				}
				return printSettingsSet(cc, r, f.verbose)
			})(cc)
		},
	}
}

// settingsValues reads KEY=VALUE arguments. Keys are not checked against
// the known ones here: the coordinator does that (naming the valid keys),
// and a newer coordinator may know keys this binary does not.
func settingsValues(args []string) (map[string]string, error) {
	if len(args) == 0 {
		return nil, usagef("settings set needs at least one KEY=VALUE, such as lost-after-days=45")
	}
	values := make(map[string]string, len(args))
	for _, arg := range args {
		key, value, ok := strings.Cut(arg, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			return nil, usagef("%q is not KEY=VALUE; write for example lost-after-days=45", arg)
		}
		// One key given twice is a typo or a copy-paste slip; silently
		// keeping either value would hide it.
		if prev, dup := values[key]; dup && prev != value {
			return nil, usagef("setting %s is given twice (%q and %q)", key, prev, value)
		}
		values[key] = value
	}
	return values, nil
}
