package main

import (
	"context"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
)

// requestTimeout bounds one console command's talk with the coordinator.
const requestTimeout = 30 * time.Second

func homeDir(cc *cli.Context) (string, error) {
	if h := cc.String("home"); h != "" {
		return h, nil
	}
	return console.DefaultHome()
}

// clientAction wraps a console command: it opens the console home, runs fn
// with a connected client and a bounded context, and closes the client.
func clientAction(nargs int, fn func(ctx context.Context, cc *cli.Context, c *console.Client) error) cli.ActionFunc {
	return func(cc *cli.Context) error {
		if nargs >= 0 {
			if err := needArgs(cc, nargs); err != nil {
				return err
			}
		}
		c, err := openConsole(cc)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(cc.Context, requestTimeout)
		defer cancel()
		return fn(ctx, cc, c)
	}
}
