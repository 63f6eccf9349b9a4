#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# mt_timers - the kernel's own tools/testing/selftests/timers as a peer suite,
# run in the guest around a migtime step (installed as /tests/mt_timers; the
# programs, built static from the kernel source by scripts/mkinitramfs, are in
# /tests/timers).
#
#   mt_timers start [SECONDS]   start inconsistency-check -c 1 (CLOCK_MONOTONIC)
#                               in the background for SECONDS (default 30),
#                               so that it runs across the migration that the
#                               next program (mt_migrate) waits for
#   mt_timers run [PROG...]     wait for that inconsistency-check, report it,
#                               then run each PROG (default: the set below)
#
# Output is KTAP: one result per selftest program (kselftest exit codes: 0
# pass, 4 skip, else fail). A program that prints its own KTAP (header and
# plan) is nested as that result's subtest, so the harness counts its leaf
# tests; the others' output is forwarded as diagnostics. Their latency limits
# are the kernel's, not ours.
#
# The set: the Makefile's non-destructive TEST_GEN_PROGS minus raw_skew (it
# sleeps 120 s) and nsleep-lat (below), threadtest shortened with its own -t, plus the destructive
# set-tai and valid-adjtimex, which only touch NTP/TAI state of this
# throwaway guest.

T=/tests/timers
# nsleep-lat is left out of the default set: it sleeps about 2 minutes
# measuring plain nanosleep latency per clock, which a realtime step does not
# touch (set-timer-lat covers timers on every clock, ABSTIME included); that
# keeps make check near its budget. `mt_timers run nsleep-lat` still runs it.
DEFAULT="posix_timers nanosleep set-timer-lat mqueue-lat threadtest rtcpie set-tai valid-adjtimex"

# args PROG: the arguments it runs with.
args() {
	case "$1" in
		threadtest) echo "-t 10" ;;
		*) echo "" ;;
	esac
}

# Known failures of this environment, not of migration or migtime: under TCG
# on a loaded 2-core host they fail the same way in a guest that was never
# migrated, in one without migtime, and on one vCPU (tests/README.md, "Peer
# suite", has the runs). posix_timers' check_overrun busy-waits 1 s against a
# 100 ms timer and wants exactly 9 overruns: a vCPU thread descheduled by the
# host for tens of ms makes it 10. rtcpie wants the CMOS RTC's periodic
# interrupt within 10 % of its period (e.g. 0.5886 s for 0.5 s).
# posix_timers' ITIMER_VIRTUAL/ITIMER_PROF want a 2 s CPU-time itimer to fire
# within 0.5 s of 2 s of thread CPU time; on a loaded host it came 0.9-1.4 s
# late (the CPU-time clocks cannot be touched by a realtime step).
# posix_timers' "check signal distribution" assumes its main thread is asleep
# 10 ms after creating a worker; on 2 vCPUs whose host threads get
# descheduled it may still be running when the process CPU timer fires, and
# takes the signal (seen without migtime and without migration; the issue's
# "once in 2 runs after a migration" is this). They are reported as "# TODO"
# with their output and measurements: visible, counted as skipped, not as
# passed. Everything else fails the run.
KNOWN_TCG_SUBTESTS="check_overrun .*|check signal distribution|ITIMER_VIRTUAL|ITIMER_PROF"
KNOWN_TCG_PROGS="rtcpie"

N=0
FAILED=0

# report NAME RC OUTFILE: one result line, with OUTFILE as its subtest or as
# diagnostics.
report() {
	N=$((N + 1))
	# posix_timers prints "Diff too high: N ns.." without a newline, so its
	# result line would start mid-line and be lost: put result lines on their
	# own lines, and other text that is not KTAP into diagnostics.
	sed -e 's/\(.\)\(not ok [0-9][0-9]* \)/\1\n\2/' -e 's/\([^ ]\)\(ok [0-9][0-9]* \)/\1\n\2/' "$3" >"$3.split"
	if grep -qE '^(TAP|KTAP) version' "$3.split"; then
		sed -E '/^(ok |not ok |#|TAP version|KTAP version|1\.\.|Bail out| )/!s/^/# /' "$3.split" >"$3"
	fi
	rm -f "$3.split"
	sed -i -E "s/^(not ok [0-9]+ ($KNOWN_TCG_SUBTESTS)) *\$/\1 # TODO known TCG timing failure (tests\/README.md)/" "$3"
	if grep -qE '^(TAP|KTAP) version' "$3" && grep -qE '^1\.\.[0-9]+' "$3"; then
		sed 's/^/    /' "$3"
	else
		sed 's/^/# /' "$3"
	fi
	known=
	case " $KNOWN_TCG_PROGS " in *" $1 "*) known=1 ;; esac
	# Failed only in known subtests: every "not ok" line is a TODO.
	if grep -q '^not ok .*# TODO known TCG' "$3" && ! grep '^not ok ' "$3" | grep -qv '# TODO known TCG'; then
		known=1
	fi
	case "$2" in
		0) echo "ok $N $1" ;;
		4) echo "ok $N $1 # SKIP" ;;
		*)
			if [ -n "$known" ]; then
				echo "not ok $N $1 # TODO known TCG timing failure, exit status $2 (tests/README.md)"
			else
				echo "not ok $N $1 # exit status $2"
				FAILED=$((FAILED + 1))
			fi
			;;
	esac
}

case "${1:-}" in
	start)
		secs=${2:-30}
		echo "TAP version 13"
		echo "1..1"
		if [ ! -x $T/inconsistency-check ]; then
			echo "not ok 1 inconsistency_check_started # no $T/inconsistency-check"
			exit 1
		fi
		rm -f /tmp/incons.rc
		# migtime's event count before and after: did a step land inside the run?
		E=/sys/kernel/debug/migtime/events
		cat $E >/tmp/incons.e0 2>/dev/null
		# Detached from our stdout: /init reads it until every writer closes it.
		( $T/inconsistency-check -c 1 -t "$secs" >/tmp/incons.out 2>&1; echo $? >/tmp/incons.rc
		  cat $E >/tmp/incons.e1 2>/dev/null ) </dev/null >/dev/null 2>&1 &
		echo "# inconsistency-check -c 1 -t $secs (CLOCK_MONOTONIC) runs in the background"
		echo "ok 1 inconsistency_check_started"
		exit 0
		;;
	run)
		shift
		progs=${*:-$DEFAULT}
		n=0
		for _ in $progs; do n=$((n + 1)); done
		[ -e /tmp/incons.out ] && n=$((n + 2))
		echo "TAP version 13"
		echo "1..$n"
		if [ -e /tmp/incons.out ]; then
			while [ ! -s /tmp/incons.rc ]; do sleep 1; done
			report "inconsistency-check_monotonic_across_migration" "$(cat /tmp/incons.rc)" /tmp/incons.out
			# The check above only means something if the step happened during it.
			N=$((N + 1))
			e0=$(cat /tmp/incons.e0 2>/dev/null) e1=$(cat /tmp/incons.e1 2>/dev/null)
			if [ -z "$e0" ] || [ -z "$e1" ]; then
				echo "ok $N migtime_step_during_inconsistency-check # SKIP migtime not loaded"
			elif [ "$e1" -gt "$e0" ]; then
				echo "ok $N migtime_step_during_inconsistency-check (events $e0 -> $e1)"
			else
				echo "not ok $N migtime_step_during_inconsistency-check (events $e0 -> $e1: the migration came after it ended)"
				FAILED=$((FAILED + 1))
			fi
		fi
		for p in $progs; do
			a=$(args "$p")
			echo "# running $p $a"
			t0=$(cut -d' ' -f1 /proc/uptime)
			# shellcheck disable=SC2086 # a is a list of words
			$T/$p $a >/tmp/timers.out 2>&1
			rc=$?
			echo "# $p: exit $rc after $(cut -d' ' -f1 /proc/uptime) - $t0 s (uptime)"
			report "$p" "$rc" /tmp/timers.out
		done
		[ "$FAILED" = 0 ]
		exit $?
		;;
	*)
		echo "usage: mt_timers start [SECONDS] | run [PROG...]" >&2
		exit 2
		;;
esac
