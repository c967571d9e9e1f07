# shellcheck shell=sh
# Sourced by preinstall and postinstall (the macOS Installer copies this whole directory).
# Plain POSIX sh and awk: tests/packaging runs these functions on Linux against a stand-in
# launchctl and real processes.

PATCHD_LABEL=org.patchd.agent
PATCHD_PLIST=/Library/LaunchDaemons/org.patchd.agent.plist
PATCHD_PREFIX=/opt/patchd
# The plist's ExitTimeOut, used when the installed plist cannot be read (tests keep them equal).
PATCHD_EXIT_TIMEOUT_S=10800
# launchd sends SIGKILL at ExitTimeOut; allow it this long to reap the job afterwards.
PATCHD_STOP_MARGIN_S=120
PATCHD_POLL_S=${PATCHD_POLL_S:-2}

# The Installer writes a script's standard error to /var/log/install.log.
log() {
	printf 'patchd %s: %s\n' "${0##*/}" "$*" >&2
}

agent_loaded() {
	launchctl print "system/$PATCHD_LABEL" >/dev/null 2>&1
}

# The running agent's pid from `launchctl print` ("pid = 123"), or nothing.
agent_pid() {
	launchctl print "system/$PATCHD_LABEL" 2>/dev/null |
		awk '$1 == "pid" && $2 == "=" && $3 ~ /^[0-9]+$/ { print $3; exit }'
}

# The pid of an `installer` process below process $1, if there is one: the agent is
# installing this very package (a self-upgrade), and waiting for it.
installer_under() {
	ps -A -o pid= -o ppid= -o comm= | awk -v root="$1" '
		{
			pid[NR] = $1; parent[NR] = $2
			name = $3; for (i = 4; i <= NF; i++) name = name " " $i
			sub(/.*\//, "", name); comm[NR] = name
		}
		END {
			below[root] = 1
			for (grew = 1; grew; ) {
				grew = 0
				for (i = 1; i <= NR; i++)
					if (!(pid[i] in below) && (parent[i] in below)) { below[pid[i]] = 1; grew = 1 }
			}
			for (i = 1; i <= NR; i++)
				if (pid[i] != root && (pid[i] in below) && comm[i] == "installer") { print pid[i]; exit }
		}'
}

# ExitTimeOut of the installed plist (macOS 12+ plutil), else the packaged value.
exit_timeout() {
	seconds=""
	if command -v plutil >/dev/null 2>&1 && [ -f "$PATCHD_PLIST" ]; then
		seconds=$(plutil -extract ExitTimeOut raw -o - "$PATCHD_PLIST" 2>/dev/null) || seconds=""
	fi
	case "$seconds" in
	'' | *[!0-9]*) seconds=$PATCHD_EXIT_TIMEOUT_S ;;
	esac
	echo "$seconds"
}

# Wait until launchd no longer has the job, at most $1 seconds.
wait_unloaded() {
	waited=0
	while agent_loaded; do
		if [ "$waited" -ge "$1" ]; then
			return 1
		fi
		sleep "$PATCHD_POLL_S"
		waited=$((waited + PATCHD_POLL_S))
	done
}

# Before the payload is written: stop the agent the way `systemctl stop` does. launchd
# sends SIGTERM; the agent stops at its next safe step, never inside a package
# transaction, so this waits up to ExitTimeOut for it. If the agent is the one running
# this installer, it is left alone: it waits for us, and we would wait for it.
stop_agent() {
	if ! agent_loaded; then
		log "the agent is not loaded"
		return 0
	fi
	pid=$(agent_pid)
	if [ -n "$pid" ] && [ -n "$(installer_under "$pid")" ]; then
		log "the agent (pid $pid) is running this installation: left running, restarted afterwards"
		return 0
	fi
	limit=$(($(exit_timeout) + PATCHD_STOP_MARGIN_S))
	log "stopping the agent; it finishes its current package transaction first (at most ${limit}s)"
	launchctl bootout "system/$PATCHD_LABEL" || true
	if ! wait_unloaded "$limit"; then
		log "the agent is still loaded after ${limit}s; check 'launchctl print system/$PATCHD_LABEL' and install again"
		return 1
	fi
	log "the agent has stopped"
}

# After a self-upgrade: once the installer process $1 has exited (the agent's package
# step is then over), reload the job from the new plist on the new version. Detached,
# so this script, and with it the installer, can finish first.
restart_after() {
	# shellcheck disable=SC2016 # expanded by the detached shell, from its arguments
	nohup /bin/sh -c '
		waited=0
		while kill -0 "$1" 2>/dev/null && [ "$waited" -lt "$2" ]; do
			sleep 5
			waited=$((waited + 5))
		done
		exec "$3" service install --manager launchd
	' patchd-restart "$1" "$(($(exit_timeout) + PATCHD_STOP_MARGIN_S))" "$PATCHD_PREFIX/bin/patchd" \
		>/dev/null 2>&1 &
}
