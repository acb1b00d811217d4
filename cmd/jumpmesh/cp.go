package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
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
			"  jumpmesh cp web-01:/var/log/nginx ./logs\n" +
			"  jumpmesh cp --wake ./patch.msi web-01:/tmp/",
		Description: "Directories are copied whole, permission bits and modification times kept; every file's SHA-256\n" +
			"is checked on arrival and a file that does not match is not kept. A progress bar is shown on a\n" +
			"terminal. A passive peer is woken first; with --wake an offline one too (see jump).",
		Flags: append([]cli.Flag{jsonFlag}, wakeFlags()...),
		Action: func(cc *cli.Context) error {
			if err := checkWakeTimeout(cc); err != nil {
				return err
			}
			if err := needArgs(cc, 2); err != nil {
				return err
			}
			srcRef, src, srcRemote := remotePath(cc.Args().Get(0))
			dstRef, dst, dstRemote := remotePath(cc.Args().Get(1))
			if srcRemote == dstRemote {
				return usagef("cp: exactly one of SRC and DST is PEER:PATH")
			}
			ref, cp := srcRef, console.Copy{Push: dstRemote, Local: dst, Remote: src}
			if dstRemote {
				ref, cp.Local, cp.Remote = dstRef, src, dst
			}
			// A missing local source, a pull the console could not name: said
			// before a grant is used.
			if err := cp.Check(); err != nil {
				return err
			}
			bar := newProgress(cc.App.ErrWriter, !cc.Bool("json") && term.IsTerminal(int(os.Stderr.Fd())))
			cp.Progress = bar.update
			return withJump(cc, ref, console.Need{Capability: grant.FileTransfer}, func(j *console.Jump) error {
				took, err := j.Copy(cc.Context, cp)
				bar.done()
				if err != nil {
					return err
				}
				v := map[string]any{"from": cc.Args().Get(0), "to": cc.Args().Get(1), "bytes": bar.total, "seconds": took.Seconds()}
				return output(cc, v, func(w io.Writer) {
					fmt.Fprintf(w, "Copied %s to %s (%s in %s).\n", cc.Args().Get(0), cc.Args().Get(1), bytesText(uint64(bar.total)), took.Round(time.Millisecond))
				})
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
