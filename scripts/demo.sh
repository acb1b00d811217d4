#!/usr/bin/env bash
# make demo: a whole site on loopback in a temporary directory — init a
# coordinator, run it, log in as its first administrator, invite a
# technician, create a jump group, policies and an installer key, install a
# peer from the key and see it online, jump to it and run a command, read
# the audit log, list everything, revoke the key.
# Everything it starts is stopped and removed on exit.
set -euo pipefail
JM=${1:-bin/jumpmesh}
JM=$(cd "$(dirname "$JM")" && pwd)/$(basename "$JM")
WORK=$(mktemp -d -t jumpmesh-demo.XXXXXX)
COORD_PID=
cleanup() {
	if [ -x "$WORK/host/jumpmesh/init-script" ]; then "$WORK/host/jumpmesh/init-script" stop >/dev/null 2>&1 || true; fi
	if [ -n "$COORD_PID" ]; then kill "$COORD_PID" 2>/dev/null || true; wait "$COORD_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# step prints a command as one would type it in a shell, exactly as given
# (the caller writes it with its quotes), so it can be copied and run.
step() { printf '\n\033[1m$ %s\033[0m\n' "$1"; }
# json_field prints the first string field NAME of a --json object. sed
# quits at the first match itself: no pipe into head, whose early exit
# would kill the writer with SIGPIPE under pipefail.
json_field() { sed -n "s/^  \"$1\": \"\(.*\)\",\{0,1\}$/\1/p;T;q"; }

step "WORK=$WORK"
step "jumpmesh coordinator init --data \$WORK/site --listen /ip4/127.0.0.1/tcp/0 --listen /ip4/127.0.0.1/udp/0/quic-v1 --http-addr 127.0.0.1:0"
"$JM" coordinator init --data "$WORK/site" --listen /ip4/127.0.0.1/tcp/0 --listen /ip4/127.0.0.1/udp/0/quic-v1 \
	--http-addr 127.0.0.1:0 --json >"$WORK/init.json"
cat "$WORK/init.json"
INVITE=$(json_field invite <"$WORK/init.json")

step "jumpmesh coordinator run --data \$WORK/site &"
"$JM" coordinator run --data "$WORK/site" >"$WORK/coordinator.out" 2>"$WORK/coordinator.log" &
COORD_PID=$!
for _ in $(seq 1 100); do
	grep -q '^ready$' "$WORK/coordinator.out" 2>/dev/null && break
	kill -0 "$COORD_PID" 2>/dev/null || { cat "$WORK/coordinator.log"; exit 1; }
	sleep 0.1
done
grep -q '^ready$' "$WORK/coordinator.out" || { echo "coordinator did not start"; cat "$WORK/coordinator.log"; exit 1; }
cat "$WORK/coordinator.out"
ADDR=$(sed -n 's/^listening \(.*\/tcp\/.*\)$/\1/p;T;q' "$WORK/coordinator.out")
METRICS=$(sed -n 's/^http \(.*\)$/\1/p' "$WORK/coordinator.out")

export JUMPMESH_HOME="$WORK/admin-console"
step "export JUMPMESH_HOME=\$WORK/admin-console"
step "jumpmesh login $ADDR $INVITE"
"$JM" login "$ADDR" "$INVITE"

step "jumpmesh user invite alice --role technician"
"$JM" user invite alice --role technician

step 'jumpmesh group create servers --name "Server Support" --team-lead alice'
"$JM" group create servers --name "Server Support" --team-lead alice

step 'jumpmesh jump-policy create any-time --tz Europe/Paris --window "daily 00:00-24:00"'
"$JM" jump-policy create any-time --tz Europe/Paris --window "daily 00:00-24:00"

step "jumpmesh session-policy create unattended --allow shell,exec"
"$JM" session-policy create unattended --allow shell,exec

step "jumpmesh settings set lost-after-days=45 connection-rate=100"
"$JM" settings set lost-after-days=45 connection-rate=100

step "jumpmesh installer create --group jumpgroup:servers --tag linux --jump-policy any-time --session-policy-not-present unattended --allow-override name,comments --valid-for 7d"
"$JM" installer create --group jumpgroup:servers --tag linux --jump-policy any-time \
	--session-policy-not-present unattended --allow-override name,comments --valid-for 7d --json >"$WORK/installer.json"
KEY=$(json_field key <"$WORK/installer.json")
ID=$(json_field id <"$WORK/installer.json")
echo "installer $ID"
echo "key $KEY"
step "KEY=$KEY"

step 'jumpmesh installer verify "$KEY" --online'
"$JM" installer verify "$KEY" --online

# The host side: install a peer from the key (as the seeds' headless install
# does), start it with its init-script, and watch it come online.
mkdir -p "$WORK/host"
step "jumpmesh peer install --key \"\$KEY\" --install-dir \$WORK/host/jumpmesh --user $(id -un) --jc-name web-01"
"$JM" peer install --key "$KEY" --install-dir "$WORK/host/jumpmesh" --user "$(id -un)" --jc-name web-01
step "\$WORK/host/jumpmesh/init-script start"
"$WORK/host/jumpmesh/init-script" start
online=
for _ in $(seq 1 100); do
	# Output captured first: grep -q on a pipe may exit before the writer ends.
	out=$("$JM" ls name:web-01 status:online --json 2>/dev/null || true)
	case $out in *'"status": "online"'*) online=1; break ;; esac
	sleep 0.1
done
[ -n "$online" ] || { echo "the peer did not come online in 10 s" >&2; cat "$WORK/host/jumpmesh/logs/"* >&2 || true; exit 1; }
step "jumpmesh ls"
"$JM" ls
step "jumpmesh show web-01"
"$JM" show web-01
step "jumpmesh peer status --dir \$WORK/host/jumpmesh"
"$JM" peer status --dir "$WORK/host/jumpmesh"

# The technician's side: a real jump, a command run on the peer.
step "jumpmesh jump web-01 -v -- uname -a"
"$JM" jump web-01 -v -- uname -a
step "jumpmesh jump web-01 -- sh -c 'echo \"hello from \$(hostname)\"; exit 3'; echo \"exit status: \$?\""
set +e
"$JM" jump web-01 -- sh -c 'echo "hello from $(hostname)"; exit 3'
echo "exit status: $?"
set -e
step "jumpmesh audit"
"$JM" audit

step "jumpmesh user list"
"$JM" user list
step "jumpmesh group list"
"$JM" group list
step "jumpmesh installer list"
"$JM" installer list

step "jumpmesh installer delete $ID && jumpmesh installer verify \"\$KEY\" --online"
"$JM" installer delete "$ID"
if "$JM" installer verify "$KEY" --online; then echo "revoked key was accepted" >&2; exit 1; fi

step "curl -fsS $METRICS | grep '^jumpmesh_coordinator_requests_total'"
if command -v curl >/dev/null; then curl -fsS "$METRICS" | grep '^jumpmesh_coordinator_requests_total' || true; fi

echo
echo "Demo done: the site, the consoles and the coordinator lived in $WORK and are removed now."
