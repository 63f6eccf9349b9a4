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
# sleeps 120 s), threadtest shortened with its own -t, plus the destructive
# set-tai and valid-adjtimex, which only touch NTP/TAI state of this
# throwaway guest.

T=/tests/timers
DEFAULT="posix_timers nanosleep nsleep-lat set-timer-lat mqueue-lat threadtest rtcpie set-tai valid-adjtimex"

# args PROG: the arguments it runs with.
args() {
	case "$1" in
		threadtest) echo "-t 10" ;;
		*) echo "" ;;
	esac
}

N=0
FAILED=0

# report NAME RC OUTFILE: one result line, with OUTFILE as its subtest or as
# diagnostics.
report() {
	N=$((N + 1))
	if grep -qE '^(TAP|KTAP) version' "$3" && grep -qE '^1\.\.[0-9]+' "$3"; then
		sed 's/^/    /' "$3"
	else
		sed 's/^/# /' "$3"
	fi
	case "$2" in
		0) echo "ok $N $1" ;;
		4) echo "ok $N $1 # SKIP" ;;
		*) echo "not ok $N $1 # exit status $2"; FAILED=$((FAILED + 1)) ;;
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
