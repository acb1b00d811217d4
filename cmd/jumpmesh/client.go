package main

import (
	"context"
	"os"
	"runtime/debug"
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
	return consoleAction(nargs, false, fn)
}

// exitingClientAction is clientAction for a command whose process exits
// once fn returns (ls): the client's close (its host's connections and
// listeners, 0.7–1.5 ms) is started, not waited for — the exit closes the
// sockets, and the coordinator sees the connection end as it sees a
// close. As jump does (withJumpTimed).
func exitingClientAction(nargs int, fn func(ctx context.Context, cc *cli.Context, c *console.Client) error) cli.ActionFunc {
	return consoleAction(nargs, true, fn)
}

func consoleAction(nargs int, exiting bool, fn func(ctx context.Context, cc *cli.Context, c *console.Client) error) cli.ActionFunc {
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
		if exiting {
			defer func() { go c.Close() }()
		} else {
			defer c.Close()
		}
		ctx, cancel := context.WithTimeout(cc.Context, requestTimeout)
		defer cancel()
		return fn(ctx, cc, c)
	}
}

// oneCallGC turns the collector off for a command that makes one call and
// exits (ls), unless GOGC or GOMEMLIMIT say otherwise: a process that
// lives 20–40 ms, most of it starting, gained nothing from the one or two
// collections its start and a list of 1,000 made (3.5 ms of CPU in a
// `jumpmesh ls` of 1,000, 1.6 ms for one peer: perf, 40 runs each), and
// what it allocates is bounded by one reply (control.MaxMessage). The
// memory limit brings the collector back should it grow past that.
func oneCallGC() {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(oneCallMemoryLimit)
}

// oneCallMemoryLimit is the heap above which oneCallGC's process collects
// again: a list of 5,000 full views decoded and printed as JSON stays
// below a quarter of it.
const oneCallMemoryLimit = 128 << 20
