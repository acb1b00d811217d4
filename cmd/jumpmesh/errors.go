package main

import (
	"io"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/mesh"
)

func errorsCommand() *cli.Command {
	return &cli.Command{
		Name:      "errors",
		Usage:     "list the error catalog: every code jumpmesh reports and its message",
		UsageText: "jumpmesh errors [--json]\n\nExample:\n  jumpmesh errors --json",
		Flags:     []cli.Flag{jsonFlag},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 0); err != nil {
				return err
			}
			type entry struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			}
			var all []entry
			rows := [][]string{{"CODE", "MESSAGE"}}
			for _, c := range mesh.Codes() {
				all = append(all, entry{string(c), c.Message()})
				rows = append(rows, []string{string(c), c.Message()})
			}
			return output(cc, all, func(w io.Writer) { table(w, rows) })
		},
	}
}
