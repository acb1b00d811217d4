package main

import (
	"io"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

func errorsCommand() *cli.Command {
	return &cli.Command{
		Name:  "errors",
		Usage: "list the error catalog: every code jumpmesh reports and its message",
		Description: "Codes marked reserved come from the seeds' appendix for features jumpmesh does not have yet\n" +
			"(pinning, session users); nothing returns them, and they keep their names for when something does.",
		UsageText: "jumpmesh errors [--json]\n\nExample:\n  jumpmesh errors --json",
		Flags:     []cli.Flag{jsonFlag},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 0); err != nil {
				return err
			}
			type entry struct {
				Code     string `json:"code"`
				Message  string `json:"message"`
				Reserved bool   `json:"reserved,omitempty"`
			}
			var all []entry
			rows := [][]string{{"CODE", "MESSAGE"}}
			for _, c := range catalog.Codes() {
				all = append(all, entry{string(c), c.Message(), c.Reserved()})
				msg := c.Message()
				if c.Reserved() {
					msg = "(reserved: nothing returns it yet) " + msg
				}
				rows = append(rows, []string{string(c), msg})
			}
			return output(cc, all, func(w io.Writer) { table(w, rows) })
		},
	}
}
