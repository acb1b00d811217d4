package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// cliReferencePath is where `make docs` writes the reference, relative to
// the module root.
const cliReferencePath = "docs/cli.md"

// docsCommand writes the CLI reference (docs/cli.md) from the command tree,
// so the reference cannot drift from the code: TestCLIReferenceIsCurrent
// fails when the committed file differs from what this prints. It is hidden
// from `jumpmesh --help`: it is for people changing jumpmesh, not using it.
func docsCommand() *cli.Command {
	var out string
	return &cli.Command{
		Name:   "docs",
		Usage:  "write the CLI reference (Markdown) generated from the command tree",
		Hidden: true,
		UsageText: "jumpmesh docs [--out FILE]\n\n" +
			"Example:\n  jumpmesh docs --out docs/cli.md",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Destination: &out, Usage: "write to FILE instead of stdout"},
		},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 0); err != nil {
				return err
			}
			ref := cliReference(newApp(io.Discard, io.Discard))
			if out == "" {
				_, err := cc.App.Writer.Write(ref)
				return err
			}
			return os.WriteFile(out, ref, 0o644)
		},
	}
}

// cliReferenceIntro is the hand-written part of the reference: what holds
// for every command. Keep it true to args.go, output.go and main.go.
const cliReferenceIntro = `# jumpmesh CLI reference

Generated from the command tree by ` + "`jumpmesh docs`" + ` (run ` + "`make docs`" + `); do not edit by
hand. ` + "`jumpmesh COMMAND --help`" + ` prints the same text.

- Flags may follow positional arguments (` + "`jumpmesh user invite alice --role admin`" + `), except
  after ` + "`--`" + `. After ` + "`jump PEER`" + `, the first word that is not one of jump's flags starts the
  remote command (` + "`jumpmesh jump web-01 -v ls -t`" + ` runs ` + "`ls -t`" + ` verbosely).
- ` + "`-v`" + ` is ` + "`--version`" + ` before a command; after ` + "`jump`" + ` or ` + "`forward`" + ` it means verbose.
- Durations take Go units plus ` + "`d`, `w` and `y`" + ` (` + "`30m`, `24h`, `7d`, `2w`, `1y`" + `).
- With ` + "`--json`" + ` a command prints its result as JSON on stdout, and an error as
  ` + "`" + `{"error": {"code": ..., "message": ..., "detail": ...}}` + "`" + ` on stdout; without it errors go
  to stderr as ` + "`jumpmesh: MESSAGE (detail)`" + `.
- Exit codes: ` + "`0`" + ` success, ` + "`1`" + ` error (the message or JSON carries a code of the
  [error catalog](#error-catalog)), ` + "`2`" + ` usage error (printed to stderr, never as JSON).
  ` + "`jump`" + ` exits with the remote command's status, and with 255 for its own failures, as ssh does.
`

// cliReference renders the reference of app: global flags, an index, one
// section per visible command (usage, examples, description, flags with
// their defaults) and the error catalog. The output depends on the code
// only, never on the machine, so the committed file can be compared.
func cliReference(app *cli.App) []byte {
	var b bytes.Buffer
	b.WriteString(cliReferenceIntro)

	fmt.Fprintf(&b, "\n## jumpmesh\n\n%s.\n\n", app.Usage)
	writeBlock(&b, app.Description)
	writeFlags(&b, "Global flags", app.Flags)

	b.WriteString("## Commands\n\n")
	var index func(path string, depth int, cmds []*cli.Command)
	index = func(path string, depth int, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Hidden {
				continue
			}
			full := path + " " + c.Name
			fmt.Fprintf(&b, "%s- [`%s`](#%s): %s\n", strings.Repeat("  ", depth), c.Name, anchor(full), c.Usage)
			index(full, depth+1, c.Subcommands)
		}
	}
	index(app.Name, 0, app.Commands)
	b.WriteString("\n")

	var sections func(path string, cmds []*cli.Command)
	sections = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Hidden {
				continue
			}
			full := path + " " + c.Name
			writeCommand(&b, full, c)
			sections(full, c.Subcommands)
		}
	}
	sections(app.Name, app.Commands)

	b.WriteString("## Error catalog\n\n")
	b.WriteString("Every code jumpmesh reports (`jumpmesh errors`); codes are stable, `--json` carries them.\n\n")
	b.WriteString("| code | message |\n| --- | --- |\n")
	for _, c := range catalog.Codes() {
		fmt.Fprintf(&b, "| `%s` | %s |\n", c, cell(c.Message()))
	}
	return b.Bytes()
}

func writeCommand(b *bytes.Buffer, full string, c *cli.Command) {
	level := "##"
	if strings.Count(full, " ") > 1 {
		level = "###"
	}
	fmt.Fprintf(b, "%s %s\n\n", level, full)
	fmt.Fprintf(b, "%s.\n\n", strings.TrimSuffix(c.Usage, "."))
	if len(c.Aliases) > 0 {
		fmt.Fprintf(b, "Aliases: `%s`.\n\n", strings.Join(c.Aliases, "`, `"))
	}
	usage := c.UsageText
	if usage == "" && len(c.Subcommands) == 0 {
		usage = strings.TrimSpace(full + " " + c.ArgsUsage)
	}
	if usage != "" {
		fmt.Fprintf(b, "```\n%s\n```\n\n", strings.TrimRight(usage, "\n"))
	}
	writeBlock(b, c.Description)
	writeFlags(b, "Flags", c.Flags)
	if len(c.Subcommands) > 0 {
		var names []string
		for _, s := range c.Subcommands {
			if !s.Hidden {
				names = append(names, fmt.Sprintf("[`%s`](#%s)", s.Name, anchor(full+" "+s.Name)))
			}
		}
		fmt.Fprintf(b, "Subcommands: %s.\n\n", strings.Join(names, ", "))
	}
}

// writeBlock keeps a description's own line breaks and indentation (lists,
// example commands) by printing it as preformatted text.
func writeBlock(b *bytes.Buffer, text string) {
	if text = strings.TrimSpace(text); text != "" {
		fmt.Fprintf(b, "```text\n%s\n```\n\n", text)
	}
}

func writeFlags(b *bytes.Buffer, title string, flags []cli.Flag) {
	if len(flags) == 0 {
		return
	}
	fmt.Fprintf(b, "%s:\n\n| flag | default | meaning |\n| --- | --- | --- |\n", title)
	for _, f := range flags {
		names := f.Names()
		for i, n := range names {
			if len(n) == 1 {
				names[i] = "-" + n
			} else {
				names[i] = "--" + n
			}
		}
		flag := "`" + strings.Join(names, "`, `") + "`"
		var usage, def string
		if df, ok := f.(cli.DocGenerationFlag); ok {
			usage = df.GetUsage()
			if df.TakesValue() {
				def = df.GetDefaultText()
			}
			if env := df.GetEnvVars(); len(env) > 0 {
				usage += " (env `" + strings.Join(env, "`, `") + "`)"
			}
		}
		if sf, ok := f.(cli.DocGenerationSliceFlag); ok && sf.IsSliceFlag() {
			usage += " (repeatable)"
		}
		if def != "" {
			def = "`" + strings.Trim(def, `"`) + "`"
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", flag, cell(def), cell(usage))
	}
	b.WriteString("\n")
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// anchor is the fragment GitHub gives a heading: lower case, spaces to
// dashes, punctuation other than '-' and '_' dropped.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
