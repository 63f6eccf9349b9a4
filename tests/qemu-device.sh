#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# End-to-end check of QEMU's -device migtime (qemu-patches/) with the
# project's guest: every page is written by QEMU itself, nothing outside it.
#
#   tests/qemu-device.sh QEMU [BZIMAGE INITRD]     KTAP on stdout
#
# QEMU is the patched binary (scripts/build-qemu), BZIMAGE and INITRD the
# guest kernel and an initramfs with a migtime.ko that binds 1b36:0016
# (scripts/mkinitramfs). Without them the VMs run only the firmware and the
# guest's checks are skipped: the page is still QEMU's to write. Hops, each
# guest a new QEMU process:
#
#   A -> B   live migration over a unix socket; B held paused HOLD seconds
#   B -> C   stop, `migrate file:`, quit; C restores it after PAUSE seconds
#   C        plain stop/cont, then a save to a file that is never loaded
#   file -> D  the same file restored again, D's clock 3 days ahead
#              (x-clock-offset-ns)
#   file -> F  and again with compensated=on: Tout 0, COMPENSATED set
#   E        snapshot-save, then the snapshot loaded twice (HMP savevm and
#            loadvm; needs qemu-img for the qcow2 disk)
#
# For each resume the host area read back from guest memory (HMP xp) must
# show the next migration_seq, the flags and a Tout equal to QMP's
# STOP -> RESUME interval (plus the offset) within TOL_MS, and the guest must
# log the step for that sequence (live migration, first restore). HOLD,
# PAUSE (seconds) and TOL_MS can be set in the environment; RUN_DIR keeps
# the consoles and logs (default: a temporary folder, removed on success).
set -euo pipefail

QEMU=${1:?usage: tests/qemu-device.sh QEMU [BZIMAGE INITRD]}
BZIMAGE=${2:-}
INITRD=${3:-}
GUEST=()
if [ -n "$BZIMAGE" ]; then
	GUEST=(-kernel "$BZIMAGE" -initrd "$INITRD" -append "console=ttyS0 panic=-1 mt.kunit=0 mt.idle=900")
fi
HOLD=${HOLD:-2} PAUSE=${PAUSE:-3} TOL_MS=${TOL_MS:-100}
DAYS3_NS=$((3 * 86400 * 1000000000))
RUN=${RUN_DIR:-$(mktemp -d)}
mkdir -p "$RUN"

declare -A FD PID LINES
N=0 FAILED=0

ok() {
	N=$((N + 1))
	if [ "$1" = 0 ]; then echo "ok $N $2"; else echo "not ok $N $2"; FAILED=$((FAILED + 1)); fi
}

cleanup() {
	local rc=$? g
	for g in "${!PID[@]}"; do kill "${PID[$g]}" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "$rc" = 0 ] && [ -z "${RUN_DIR:-}" ]; then rm -rf "$RUN"; else echo "# logs in $RUN"; fi
	[ "$rc" = 0 ] || [ "$FAILED" != 0 ] || echo "not ok $((N + 1)) script_ended_early # exit status $rc"
}
trap cleanup EXIT

# start NAME [EXTRA QEMU ARGS...]: a guest with its QMP on a TCP port.
start() {
	local name=$1 port
	shift
	port=$((20000 + RANDOM % 20000))
	"$QEMU" -L /usr/share/seabios -L /usr/share/qemu -accel tcg -smp 2 -m 256M \
		-nodefaults -display none -no-reboot \
		-object memory-backend-ram,id=ram0,size=256M -machine q35,memory-backend=ram0 \
		"${GUEST[@]}" -serial "file:$RUN/console-$name.log" -serial "file:$RUN/results-$name.ktap" \
		-qmp "tcp:127.0.0.1:$port,server=on,wait=off" "$@" >"$RUN/qemu-$name.log" 2>&1 &
	PID[$name]=$!
	local i
	for i in $(seq 100); do
		if { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then break; fi
		sleep 0.1
		[ "$i" = 100 ] && { cat "$RUN/qemu-$name.log" >&2; return 1; }
	done
	FD[$name]=$fd
	LINES[$name]=0
	: >"$RUN/qmp-$name.log"
	read -r -t 10 -u "$fd" line && echo "$line" >>"$RUN/qmp-$name.log"
	qmp "$name" '{"execute":"qmp_capabilities"}' >/dev/null
	qmp "$name" '{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"events","state":true}]}}' >/dev/null
}

# qmp NAME JSON: send a command, print its reply (events go to the log).
qmp() {
	local fd=${FD[$1]} line
	printf '%s\n' "$2" >&"$fd"
	while read -r -t 120 -u "$fd" line 2>/dev/null; do
		echo "$line" >>"$RUN/qmp-$1.log"
		case "$line" in *'"return"'* | *'"error"'*) echo "$line"; return 0 ;; esac
	done
	return 1
}

hmp() {
	qmp "$1" "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"$2\"}}"
}

# wait_event NAME PATTERN [SECS]: the first new QMP line matching PATTERN.
wait_event() {
	local name=$1 pat=$2 secs=${3:-120} fd=${FD[$1]} line end
	end=$((SECONDS + secs))
	while [ $SECONDS -lt $end ]; do
		line=$(tail -n +"$((LINES[$name] + 1))" "$RUN/qmp-$name.log" | grep -m1 -n -- "$pat" || true)
		if [ -n "$line" ]; then
			LINES[$name]=$((LINES[$name] + ${line%%:*}))
			echo "${line#*:}"
			return 0
		fi
		if read -r -t 1 -u "$fd" line; then echo "$line" >>"$RUN/qmp-$name.log"; fi
	done
	return 1
}

# Event time in microseconds of host real time.
event_us() {
	local s u
	s=$(sed -n 's/.*"seconds": *\([0-9]*\).*/\1/p' <<<"$1")
	u=$(sed -n 's/.*"microseconds": *\([0-9]*\).*/\1/p' <<<"$1")
	echo $((s * 1000000 + u))
}

# page NAME: the host area as "seq flags delta total", and the guest's
# wake_source, read from BAR2 of the migtime device through HMP.
page() {
	local bar q
	bar=$(hmp "$1" "info pci" | grep -io 'device 1b36:0016.*' | grep -o 'BAR2: 64 bit prefetchable memory at 0x[0-9a-f]*' | head -n1 | grep -o '0x[0-9a-f]*$')
	[ -n "$bar" ] || return 1
	mapfile -t q < <(hmp "$1" "xp /48gx $bar" | grep -o '0x[0-9a-f]\{16\}')
	echo "$((q[2])) $((q[1] >> 32)) $((q[3])) $((q[4])) $(((q[43]) & 0xffffffff))"
}

wait_console() {
	local i
	for i in $(seq "${3:-600}"); do
		grep -q -- "$2" "$RUN/console-$1.log" 2>/dev/null && return 0
		sleep 1
	done
	return 1
}

# check_resume NAME SEQ FLAGS STOP_US RESUME_US OFFSET_NS: the page after
# a resume: its sequence, flags and Tout against the QMP interval.
check_resume() {
	local seq flags delta total wake want err
	read -r seq flags delta total wake < <(page "$1")
	want=$((($5 - $4) * 1000 + $6))
	err=$(((delta - want) / 1000000))
	echo "# $1: seq $seq flags $flags tout ${delta} ns total $total ns (guest area wake_source $wake); QMP STOP->RESUME $((($5 - $4) / 1000)) ms (+offset $6 ns): error ${err} ms"
	[ "$seq" = "$2" ] && [ "$flags" = "$3" ] && [ "${err#-}" -le "$TOL_MS" ]
}

# guest_stepped NAME SEQ: the guest logged a step for that sequence
# (true without a guest).
guest_stepped() {
	[ -n "$BZIMAGE" ] || { echo "# no guest: skipped"; return 0; }
	wait_console "$1" "clock step: .* for migration_seq $2," 60 &&
		grep -o "clock step: .* for migration_seq $2,.*" "$RUN/console-$1.log" | sed 's/^/# guest: /'
}

echo "TAP version 13"
echo "1..12"

start A -device migtime,id=mt
if [ -n "$BZIMAGE" ]; then
	if wait_console A "bound: mode=doorbell" 300; then ok 0 "guest_binds_device_with_doorbell"; else ok 1 "guest_binds_device_with_doorbell"; fi
else
	sleep 3 # the firmware assigns the BARs
	if page A >/dev/null; then ok 0 "device_page_in_bar2 # SKIP no guest"; else ok 1 "device_page_in_bar2 # SKIP no guest"; fi
fi

# A -> B: live migration, B held paused.
start B -device migtime,id=mt -incoming defer -S
qmp B "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"unix:$RUN/mig.sock\"}}" >/dev/null
qmp A "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:$RUN/mig.sock\"}}" >/dev/null
stop_us=$(event_us "$(wait_event A '"STOP"')")
wait_event B '"status": *"completed"' >/dev/null
sleep "$HOLD"
qmp B '{"execute":"cont"}' >/dev/null
resume_us=$(event_us "$(wait_event B '"RESUME"')")
if check_resume B 1 0 "$stop_us" "$resume_us" 0; then ok 0 "live_migration_page_tout_matches_stop_to_resume"; else ok 1 "live_migration_page_tout_matches_stop_to_resume"; fi
if guest_stepped B 1 && { [ -z "$BZIMAGE" ] || [ "$(page B | cut -d' ' -f5)" = 1 ]; }; then ok 0 "live_migration_guest_stepped_on_the_doorbell"; else ok 1 "live_migration_guest_stepped_on_the_doorbell"; fi
total_b=$(page B | cut -d' ' -f4)
qmp A '{"execute":"quit"}' >/dev/null || true

# B -> file -> C after a pause: a restore.
sleep 2
qmp B '{"execute":"stop"}' >/dev/null
stop_us=$(event_us "$(wait_event B '"STOP"')")
qmp B "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"file:$RUN/vm.img\"}}" >/dev/null
wait_event B '"status": *"completed"' >/dev/null
qmp B '{"execute":"quit"}' >/dev/null || true
sleep "$PAUSE"
start C -device migtime,id=mt -incoming defer -S
qmp C "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"file:$RUN/vm.img\"}}" >/dev/null
wait_event C '"status": *"completed"' >/dev/null
qmp C '{"execute":"cont"}' >/dev/null
resume_us=$(event_us "$(wait_event C '"RESUME"')")
if check_resume C 2 2 "$stop_us" "$resume_us" 0; then ok 0 "file_restore_page_counts_from_user_stop_with_restore_flag"; else ok 1 "file_restore_page_counts_from_user_stop_with_restore_flag"; fi
if guest_stepped C 2; then ok 0 "file_restore_guest_stepped"; else ok 1 "file_restore_guest_stepped"; fi

# C: a plain stop/cont, and a save that is never loaded, change nothing.
before=$(page C | cut -d' ' -f1-4)
qmp C '{"execute":"stop"}' >/dev/null
sleep 1
qmp C '{"execute":"cont"}' >/dev/null
wait_event C '"RESUME"' >/dev/null
after=$(page C | cut -d' ' -f1-4)
echo "# C: before stop/cont: $before; after: $after"
if [ "$before" = "$after" ]; then ok 0 "plain_stop_cont_changes_nothing"; else ok 1 "plain_stop_cont_changes_nothing"; fi
qmp C "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"file:$RUN/unused.img\"}}" >/dev/null
wait_event C '"status": *"completed"' >/dev/null
qmp C '{"execute":"cont"}' >/dev/null
wait_event C '"RESUME"' >/dev/null
after=$(page C | cut -d' ' -f1-4)
echo "# C: after a save never loaded and cont: $after"
if [ "$before" = "$after" ]; then ok 0 "save_never_loaded_changes_nothing"; else ok 1 "save_never_loaded_changes_nothing"; fi
qmp C '{"execute":"quit"}' >/dev/null || true

# The same file again, on a destination whose clock is 3 days ahead.
start D -device "migtime,id=mt,x-clock-offset-ns=$DAYS3_NS" -incoming defer -S
qmp D "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"file:$RUN/vm.img\"}}" >/dev/null
wait_event D '"status": *"completed"' >/dev/null
qmp D '{"execute":"cont"}' >/dev/null
resume_us=$(event_us "$(wait_event D '"RESUME"')")
if check_resume D 2 2 "$stop_us" "$resume_us" "$DAYS3_NS"; then ok 0 "same_file_restored_again_3_days_later"; else ok 1 "same_file_restored_again_3_days_later"; fi
if [ -n "$BZIMAGE" ]; then
	wait_console D "migration_seq 2" 60 || true
	grep -E "migration_seq 2|refus" "$RUN/console-D.log" | tail -n 2 | sed 's/^/# guest D: /'
fi
compensated=$(qmp D '{"execute":"qom-get","arguments":{"path":"/machine/peripheral/mt","property":"compensated"}}')
if [[ $compensated == *'"return": false'* ]]; then ok 0 "compensated_is_off_by_default"; else ok 1 "compensated_is_off_by_default"; fi
qmp D '{"execute":"quit"}' >/dev/null || true

# F: the same file on a destination whose VMM compensates: Tout 0 with the flag.
start F -device migtime,id=mt,compensated=on -incoming defer -S
qmp F "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"file:$RUN/vm.img\"}}" >/dev/null
wait_event F '"status": *"completed"' >/dev/null
qmp F '{"execute":"cont"}' >/dev/null
wait_event F '"RESUME"' >/dev/null
page_f=$(page F | cut -d' ' -f1-4)
echo "# F: $page_f (B's total was $total_b)"
if [ "$page_f" = "2 3 0 $total_b" ]; then ok 0 "compensated_reports_zero_with_flag"; else ok 1 "compensated_reports_zero_with_flag"; fi
qmp F '{"execute":"quit"}' >/dev/null || true

# E: one snapshot, loaded twice; each load counts from the snapshot's stop.
if command -v qemu-img >/dev/null; then
	qemu-img create -q -f qcow2 "$RUN/disk.qcow2" 64M
	start E -device migtime,id=mt -drive "if=none,id=d0,file=$RUN/disk.qcow2,format=qcow2"
	[ -z "$BZIMAGE" ] || wait_console E "bound: mode=doorbell" 300
	sleep 3
	hmp E "savevm s1" >/dev/null
	save_us=$(event_us "$(wait_event E '"STOP"')")
	wait_event E '"RESUME"' >/dev/null
	rc=0
	for _ in 1 2; do
		sleep "$PAUSE"
		hmp E "loadvm s1" >/dev/null
		wait_event E '"STOP"' >/dev/null
		resume_us=$(event_us "$(wait_event E '"RESUME"')")
		check_resume E 1 2 "$save_us" "$resume_us" 0 || rc=1
	done
	ok $rc "snapshot_loaded_twice_counts_from_the_save_both_times"
	if [ -n "$BZIMAGE" ]; then
		sleep 5
		n=$(grep -c "clock step: .* for migration_seq 1," "$RUN/console-E.log" || true)
		echo "# guest E stepped $n times for migration_seq 1"
		if [ "$n" = 2 ]; then ok 0 "snapshot_loaded_twice_guest_stepped_both_times"; else ok 1 "snapshot_loaded_twice_guest_stepped_both_times"; fi
	else
		ok 0 "snapshot_loaded_twice_guest_stepped_both_times # SKIP no guest"
	fi
	qmp E '{"execute":"quit"}' >/dev/null || true
else
	ok 0 "snapshot_loaded_twice_counts_from_the_save_both_times # SKIP no qemu-img"
	ok 0 "snapshot_loaded_twice_guest_stepped_both_times # SKIP no qemu-img"
fi

[ "$FAILED" = 0 ]
