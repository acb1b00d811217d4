package peer

import (
	"fmt"
	osuser "os/user"
	"strings"
)

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// initScript is the install directory's init-script: start, stop, restart,
// status, with LSB exit codes (status: 0 running, 1 dead with a pid file,
// 3 not running; 2 unknown action; 1 failure).
func initScript(dir, user string) string {
	return fmt.Sprintf(`#!/bin/sh
# jumpmesh peer: start|stop|restart|status (LSB exit codes).
DIR=%s
RUN_AS=%s
BIN="$DIR/jumpmesh"
PIDFILE="$DIR/run/peer.pid"
LOG="$DIR/logs/peer.log"

pid() { [ -f "$PIDFILE" ] && cat "$PIDFILE"; }
running() { p=$(pid) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start() {
	if running; then echo "jumpmesh peer is already running (pid $(pid))"; return 0; fi
	[ -x "$BIN" ] || { echo "$BIN is missing" >&2; return 5; }
	rm -f "$PIDFILE"
	cmd="exec \"$BIN\" peer run --dir \"$DIR\" --pid-file \"$PIDFILE\" >>\"$LOG\" 2>&1 </dev/null"
	if [ "$(id -u)" = 0 ] && [ -n "$RUN_AS" ] && [ "$RUN_AS" != root ]; then
		setsid su -s /bin/sh "$RUN_AS" -c "$cmd" &
	else
		setsid sh -c "$cmd" &
	fi
	i=0
	while [ $i -lt 100 ]; do
		running && { echo "jumpmesh peer started (pid $(pid))"; return 0; }
		i=$((i + 1)); sleep 0.1
	done
	echo "jumpmesh peer did not start; see $LOG" >&2
	return 1
}

stop() {
	if ! running; then rm -f "$PIDFILE"; echo "jumpmesh peer is not running"; return 0; fi
	p=$(pid)
	kill -TERM "$p" 2>/dev/null
	i=0
	while [ $i -lt 100 ]; do
		kill -0 "$p" 2>/dev/null || { rm -f "$PIDFILE"; echo "jumpmesh peer stopped"; return 0; }
		i=$((i + 1)); sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null
	rm -f "$PIDFILE"
	echo "jumpmesh peer killed after 10 s"
	return 0
}

status() {
	if running; then echo "jumpmesh peer is running (pid $(pid))"; "$BIN" peer status --dir "$DIR" 2>/dev/null; return 0; fi
	if [ -f "$PIDFILE" ]; then echo "jumpmesh peer is dead but its pid file exists"; return 1; fi
	echo "jumpmesh peer is not running"
	return 3
}

case "$1" in
	start) start ;;
	stop) stop ;;
	restart) stop && start ;;
	status) status ;;
	*) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
`, shellQuote(dir), shellQuote(user))
}

// uninstallScript runs `jumpmesh peer uninstall` for this directory.
func uninstallScript(dir string) string {
	return fmt.Sprintf(`#!/bin/sh
# Uninstalls this jumpmesh peer: stops it, tells the coordinator when it can,
# and removes this directory.
exec %s peer uninstall --dir %s "$@"
`, shellQuote(dir+"/"+binaryFile), shellQuote(dir))
}

// systemdUnit runs the peer as a service. To start it at boot:
//
//	cp DIR/jumpmesh-peer.service /etc/systemd/system/
//	systemctl daemon-reload && systemctl enable --now jumpmesh-peer
func systemdUnit(dir, user string) string {
	if user == "" {
		// A non-root install runs as the user who installed it, never as
		// the root a copied unit would otherwise default to.
		if u, err := osuser.Current(); err == nil {
			user = u.Username
		}
	}
	u := ""
	if user != "" {
		u = "User=" + user + "\n"
	}
	return fmt.Sprintf(`[Unit]
Description=jumpmesh peer (%[1]s)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
%[2]sExecStart=%[1]s/jumpmesh peer run --dir %[1]s
# A peer that uninstalled itself exits 0 and is not restarted.
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
`, dir, u)
}
