package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// remotePath splits "PEER:PATH"; a path with a slash before any colon (or
// starting with . or /) is local, as with scp.
func remotePath(s string) (ref, path string, remote bool) {
	i := strings.Index(s, ":")
	if i <= 0 || strings.ContainsAny(s[:i], "/") || strings.HasPrefix(s, ".") {
		return "", s, false
	}
	return s[:i], s[i+1:], true
}

func cpCommand() *cli.Command {
	return &cli.Command{
		Name:      "cp",
		Usage:     "copy files and directories to or from a peer",
		ArgsUsage: "SRC DST",
		UsageText: "jumpmesh cp SRC DST   (one of them PEER:PATH)\n\n" +
			"Examples:\n" +
			"  jumpmesh cp ./backup.tar.gz web-01:/tmp/\n" +
			"  jumpmesh cp web-01:/var/log/nginx ./logs",
		Description: "Directories are copied whole, permission bits and modification times kept; every file's SHA-256\n" +
			"is checked on arrival and a file that does not match is not kept. A progress bar is shown on a\n" +
			"terminal.",
		Flags: []cli.Flag{jsonFlag},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 2); err != nil {
				return err
			}
			srcRef, src, srcRemote := remotePath(cc.Args().Get(0))
			dstRef, dst, dstRemote := remotePath(cc.Args().Get(1))
			if srcRemote == dstRemote {
				return usagef("cp: exactly one of SRC and DST is PEER:PATH")
			}
			ref := srcRef
			if dstRemote {
				ref = dstRef
				// A missing local source is said before a grant is used.
				if err := channel.CheckSource(src); err != nil {
					return err
				}
			} else if err := console.CheckPull(src, dst); err != nil {
				return err
			}
			home, err := homeDir(cc)
			if err != nil {
				return err
			}
			c, err := console.Open(home)
			if err != nil {
				return err
			}
			defer c.Close()
			j, err := c.Jump(cc.Context, ref, grant.FileTransfer)
			if err != nil {
				return err
			}
			defer j.ReportPath(context.WithoutCancel(cc.Context))
			path := src
			if dstRemote {
				path = dst
			}
			ch, err := j.Open(cc.Context, &pb.ChannelOpen{Kind: &pb.ChannelOpen_File{File: &pb.FileOpen{Push: dstRemote, Path: path}}})
			if err != nil {
				return err
			}
			defer ch.Close()
			bar := newProgress(cc.App.ErrWriter, !cc.Bool("json") && term.IsTerminal(int(os.Stderr.Fd())))
			start := time.Now()
			if dstRemote {
				err = console.Push(cc.Context, ch, src, bar.update)
			} else {
				err = console.Pull(cc.Context, ch, src, dst, bar.update)
			}
			bar.done()
			if err != nil {
				return err
			}
			v := map[string]any{"from": cc.Args().Get(0), "to": cc.Args().Get(1), "bytes": bar.total, "seconds": time.Since(start).Seconds()}
			return output(cc, v, func(w io.Writer) {
				fmt.Fprintf(w, "Copied %s to %s (%s in %s).\n", cc.Args().Get(0), cc.Args().Get(1), bytesText(uint64(bar.total)), time.Since(start).Round(time.Millisecond))
			})
		},
	}
}

// progress draws a one-line bar on a terminal, at most ten times a second.
type progress struct {
	w            io.Writer
	show         bool
	mu           sync.Mutex
	last         time.Time
	done_, total int64
}

func newProgress(w io.Writer, show bool) *progress { return &progress{w: w, show: show} }

func (p *progress) update(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done_, p.total = done, max(total, done)
	if !p.show || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(done) / float64(p.total)
	}
	const width = 30
	n := int(pct / 100 * width)
	fmt.Fprintf(p.w, "\r[%s%s] %5.1f%% %s / %s", strings.Repeat("=", n), strings.Repeat(" ", width-n), pct, bytesText(uint64(done)), bytesText(uint64(p.total)))
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.show && !p.last.IsZero() {
		fmt.Fprintln(p.w)
	}
}
