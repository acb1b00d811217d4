package peer

import (
	"fmt"
	osuser "os/user"
	"strings"
)

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// runAs is the user a peer runs as: --user, else whoever installs it (never
// the root a copied unit or a root-run init-script would otherwise use).
func runAs(user string) string {
	if user == "" {
		if u, err := osuser.Current(); err == nil {
			user = u.Username
		}
	}
	return user
}

// initScript is the install directory's init-script: start, stop, restart,
// status, with LSB exit codes (status: 0 running, 1 dead with a pid file,
// 3 not running; 2 unknown action; 1 failure).
//
// Root runs it, and run/peer.pid is written by the peer's user: a PID is
// the peer's only if /proc/PID/exe is this install's binary and the
// process belongs to RUN_UID (is_peer); stop refuses to signal anything else.
func initScript(dir, user string, uid int) string {
	return fmt.Sprintf(`#!/bin/sh
# jumpmesh peer: start|stop|restart|status (LSB exit codes).
DIR=%s
RUN_AS=%s
RUN_UID=%d
BIN="$DIR/jumpmesh"
PIDFILE="$DIR/run/peer.pid"
LOG="$DIR/logs/peer.log"

# The pid file is the peer's user's: read digits only, never through a link.
pid() { [ -f "$PIDFILE" ] && [ ! -L "$PIDFILE" ] && head -c 32 "$PIDFILE" | tr -cd 0-9; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
# is_peer PID: the process runs this install's binary as RUN_UID.
is_peer() {
	real=$(readlink -f "$BIN") || return 1
	exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
	[ "$exe" = "$real" ] || [ "$exe" = "$real (deleted)" ] || return 1
	[ "$(stat -c %%u "/proc/$1" 2>/dev/null)" = "$RUN_UID" ]
}
running() { p=$(pid) && alive "$p" && is_peer "$p"; }

start() {
	if running; then echo "jumpmesh peer is already running (pid $(pid))"; return 0; fi
	[ -x "$BIN" ] || { echo "$BIN is missing" >&2; return 5; }
	rm -f "$PIDFILE"
	cmd="exec \"$BIN\" peer run --dir \"$DIR\" --pid-file \"$PIDFILE\" >>\"$LOG\" 2>&1 </dev/null"
	if [ "$(id -u)" = 0 ] && [ -n "$RUN_AS" ] && [ "$RUN_AS" != root ]; then
		# su stays as the parent of the peer: it must not hold our output open.
		setsid su -s /bin/sh "$RUN_AS" -c "$cmd" </dev/null >/dev/null 2>&1 &
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
	p=$(pid)
	if ! alive "$p"; then rm -f "$PIDFILE"; echo "jumpmesh peer is not running"; return 0; fi
	if ! is_peer "$p"; then
		echo "jumpmesh peer: $PIDFILE names process $p, which is not this peer ($BIN run by uid $RUN_UID); not signalling it." >&2
		echo "If the peer is not running, remove $PIDFILE." >&2
		return 1
	fi
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
`, shellQuote(dir), shellQuote(user), uid)
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
	user = runAs(user)
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
