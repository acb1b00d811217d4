package main

import (
	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
)

// openConsole opens the console home of the command line (--home).
func openConsole(cc *cli.Context) (*console.Client, error) {
	home, err := homeDir(cc)
	if err != nil {
		return nil, err
	}
	return console.Open(home)
}

// withJump is jump, cp and forward: open the console, ask for a grant for
// need on the peer ref, run fn with the jump, report how the session
// connected.
func withJump(cc *cli.Context, ref string, need console.Need, fn func(*console.Jump) error) error {
	c, err := openConsole(cc)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.WithJump(cc.Context, ref, need, fn)
}
