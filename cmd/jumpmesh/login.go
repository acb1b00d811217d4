package main

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
)

func loginCommand() *cli.Command {
	return &cli.Command{
		Name:      "login",
		Usage:     "log this console in to a site with a one-time invite code",
		ArgsUsage: "COORDINATOR-ADDR CODE",
		UsageText: "jumpmesh login COORDINATOR-ADDR CODE [--json]\n\n" +
			"Example:\n" +
			"  jumpmesh login /ip4/203.0.113.7/tcp/4830/p2p/12D3KooWRb... k3p7-2xqa-m4vd-9tce-hu6w-fn5r",
		Description: "Makes the technician's key (mode 0600) in the console home ($JUMPMESH_HOME, or the user's\n" +
			"config dir) if there is none, and binds it to the invited user. Every later command\n" +
			"authenticates with that key. COORDINATOR-ADDR is printed by `coordinator init`.",
		Flags: []cli.Flag{jsonFlag},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 2); err != nil {
				return err
			}
			home, err := homeDir(cc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cc.Context, requestTimeout)
			defer cancel()
			c, resp, err := console.Login(ctx, home, cc.Args().Get(0), cc.Args().Get(1))
			if err != nil {
				return err
			}
			defer c.Close()
			v := struct {
				User    userView `json:"user"`
				Site    string   `json:"site"`
				Console string   `json:"console_key"`
				Home    string   `json:"home"`
			}{newUserView(resp.GetUser()), c.Site().String(), c.ID().String(), home}
			return output(cc, v, func(w io.Writer) {
				fmt.Fprintf(w, "Logged in to site %s as %s (%s).\nConsole key %s is in %s.\n",
					v.Site, v.User.Name, v.User.Role, v.Console, home)
			})
		},
	}
}

func whoamiCommand() *cli.Command {
	return &cli.Command{
		Name:      "whoami",
		Usage:     "show the user this console is logged in as",
		UsageText: "jumpmesh whoami [--json]\n\nExample:\n  jumpmesh whoami",
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(0, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			d, err := c.WhoAmI(ctx)
			if err != nil {
				return err
			}
			return printUserDetail(cc, d)
		}),
	}
}
