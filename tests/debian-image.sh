#!/usr/bin/env bash
# Boot the Debian 13 guest image (scripts/build-debian-image) under QEMU and
# show, on its console, what an admin who installed migtime with apt gets.
#
#   tests/debian-image.sh [chrony|timesyncd]
#
# The guest: Debian's unmodified cloud vmlinuz and the image's initrd, q35,
# 2 vCPUs under TCG, the image as a virtio-blk disk (snapshot=on: the cached
# image is never written), virtio-net user networking, an ivshmem-plain
# device holding a migtime page (host area: version 1, migration_seq 0). On
# the host, the harness's NTP server (tests/ntp-sim) serves the real clock on
# 127.0.0.1:123, which the guest reaches as 10.0.2.2:123.
#
# The transcript (build/debian-image-<daemon>/transcript.txt, also printed)
# shows: systemd reaching multi-user.target, migtime loaded by udev through
# the package's modprobe hook (no modules-load entry), migtime-companion.service
# active as _migtime with CAP_SYS_TIME only and /dev/migtime open, the time
# daemon synchronised to the host; then the host writes migration_seq 1 with
# Tout = +50 ms into the page (as after a migration), the module steps the
# guest's clock, the companion acts under its sandbox (chronyc over chronyd's
# socket) and the daemon is synchronised again.
# MIGTIME_DEBIAN_IMAGE=DIR boots an image already built (no rebuild). The script then checks the
# transcript for each of these and exits non-zero when one is missing.
source "$(dirname "$0")/../scripts/lib.sh"

DAEMON=${1:-chrony}
RUN="$MIGTIME_ROOT/build/debian-image-$DAEMON"
rm -rf "$RUN"
mkdir -p "$RUN"
exec 8>"$MIGTIME_ROOT/build/.debian-image.lock"
flock 8 # one at a time: the NTP server needs UDP port 123

stage "image ($DAEMON)"
IMG=${MIGTIME_DEBIAN_IMAGE:-$("$MIGTIME_ROOT/scripts/build-debian-image" --daemon "$DAEMON" | tail -n1)}
stage "NTP server: cargo build -p migtime-ntp-sim"
run_logged "$RUN/ntp-build.log" nice -n 10 cargo build --release -q -p migtime-ntp-sim
NTPSIM="${CARGO_TARGET_DIR:-$MIGTIME_ROOT/target}/release/migtime-ntp-sim"

PAGE=/dev/shm/migtime-debian-image-$$
cleanup() {
	[ -z "${QEMU_PID:-}" ] || kill "$QEMU_PID" 2>/dev/null || true
	[ -z "${NTP_PID:-}" ] || kill "$NTP_PID" 2>/dev/null || true
	rm -f "$PAGE"
}
trap cleanup EXIT

# write_page SEQ TOUT_NS TOTAL_NS: the host area, as a host writes it.
write_page() { python3 "$MIGTIME_ROOT/tests/debian-page.py" "$PAGE" "$@"; }
truncate -s 1M "$PAGE"
write_page 0 0 0

stage "NTP server on 127.0.0.1:123 (the host's real clock)"
mkfifo "$RUN/ntp.in"
"$NTPSIM" 127.0.0.1:123 0 0 <"$RUN/ntp.in" >"$RUN/ntp.log" 2>&1 &
NTP_PID=$!
exec 4>"$RUN/ntp.in"
sleep 0.5
grep -q '^listening' "$RUN/ntp.log" || die "the NTP server did not start: $(cat "$RUN/ntp.log")"

QEMU_ARGS=(
	-accel "$MIGTIME_ACCEL" -smp 2 -m 1024 -nodefaults -display none -no-reboot
	-object "memory-backend-ram,id=ram0,size=1024M" -machine "q35,memory-backend=ram0"
	-object "memory-backend-file,id=pv,size=1M,mem-path=$PAGE,share=on"
	-device "ivshmem-plain,memdev=pv,master=on"
	-drive "file=$IMG/disk.raw,if=virtio,format=raw,snapshot=on"
	-netdev "user,id=n0" -device "virtio-net-pci,netdev=n0"
	-kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img" -append "$(cat "$IMG/cmdline")"
	-chardev "socket,id=con,path=$RUN/console.sock,server=on,wait=off,logfile=$RUN/console.log"
	-serial chardev:con
)
printf '%q ' qemu-system-x86_64 "${QEMU_ARGS[@]}" >"$RUN/qemu.cmdline"
stage "booting: qemu-system-x86_64 (TCG, 2 vCPUs); console log $RUN/console.log"
MIGTIME_T_QEMU=$(date +%s.%N)
export MIGTIME_T_QEMU
qemu-system-x86_64 "${QEMU_ARGS[@]}" >"$RUN/qemu.log" 2>&1 &
QEMU_PID=$!

# What the guest is asked (tests/debian-console.py runs it line by line).
{
	cat <<-'EOF'
		# systemd
		systemctl is-system-running --wait
		systemctl is-active multi-user.target
		systemd-analyze
		systemctl --failed --no-legend
		# migtime loaded by udev for the ivshmem device, through the package's hook
		cat /proc/cmdline
		grep -rsw migtime /etc/modules /etc/modules-load.d /usr/lib/modules-load.d /run/modules-load.d || echo "no modules-load entry for migtime"
		lsmod | grep -w migtime
		for d in /sys/bus/pci/devices/*; do echo "$(basename "$d") $(cat "$d/vendor"):$(cat "$d/device") $(basename "$(readlink "$d/driver" 2>/dev/null)")"; done | grep 0x1af4:0x1110
		modprobe -c | grep '^install migtime'
		journalctl -b -o short-monotonic --no-pager -k | grep -E 'kernel: migtime[ :]' | head -n 5
		journalctl -b -o short-monotonic --no-pager -u systemd-udevd | grep -i migtime | head -n 5
		ls -l /dev/migtime /dev/vmclock* 2>&1
		# the companion under its unit
		systemctl is-active migtime-companion.service
		systemctl show -p User,Group,AmbientCapabilities,CapabilityBoundingSet,DevicePolicy,DeviceAllow,ReadWritePaths migtime-companion.service
		p=$(systemctl show -P MainPID migtime-companion.service); grep -E '^(Uid|Gid|Groups|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/$p/status; ls -l /proc/$p/fd | grep -E 'migtime|vmclock'
		id _migtime
		journalctl -b -o short-monotonic --no-pager -u migtime-companion.service
	EOF
	if [ "$DAEMON" = chrony ]; then
		cat <<-'EOF'
			# chronyd synchronised to the host (10.0.2.2)
			stat -c '%A %U:%G %n' /run/chrony /run/chrony/chronyd.sock
			chronyc -n waitsync 30 0.01 0 2 >/dev/null; chronyc -n sources; chronyc -n tracking
		EOF
	else
		cat <<-'EOF'
			# systemd-timesyncd synchronised to the host (10.0.2.2)
			systemctl is-active systemd-timesyncd.service && echo "timesyncd: active"
			for i in $(seq 30); do [ -e /run/systemd/timesync/synchronized ] && break; sleep 2; done; ls /run/systemd/timesync/
			timedatectl timesync-status
		EOF
	fi
	cat <<-EOF
		# a migration as the guest sees it: the "new host" is 50 ms ahead (the NTP server now serves +50 ms) and writes migration_seq 1 with Tout +50 ms
		!host echo "set 50000000 0" >$RUN/ntp.in && python3 $MIGTIME_ROOT/tests/debian-page.py $PAGE 1 50000000 50000000 && echo "NTP server +50 ms; page: migration_seq 1, tai_delta_ns 50000000"
		sleep 4
		journalctl -b -o short-monotonic --no-pager -k | grep -E 'kernel: migtime[ :]' | tail -n 2
		journalctl -b -o short-monotonic --no-pager -u migtime-companion.service | tail -n 6
	EOF
	if [ "$DAEMON" = chrony ]; then
		echo 'sleep 10; chronyc -n sources; chronyc -n tracking'
	else
		echo 'sleep 5; journalctl -b -o short-monotonic --no-pager -u systemd-timesyncd | grep -E -A3 "System time changed|Contacted|synchroniz" | tail -n 12; timedatectl timesync-status'
	fi
	echo '# power off'
	echo '!poweroff'
} >"$RUN/script"

stage "console: running $(grep -cv '^#' "$RUN/script") commands in the guest"
python3 "$MIGTIME_ROOT/tests/debian-console.py" "$RUN/console.sock" <"$RUN/script" | tee "$RUN/transcript.txt" ||
	die "the console driver failed (console log: $RUN/console.log)"
for _ in $(seq 120); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$QEMU_PID" 2>/dev/null; then
	die "the guest did not power off (console log: $RUN/console.log)"
fi
QEMU_PID=
stage "guest powered off; checking the transcript"

T="$RUN/transcript.txt"
fails=0
# expect WHAT EXTENDED-REGEX: the transcript must match.
expect() {
	if grep -Eq -- "$2" "$T"; then
		note "ok: $1"
	else
		note "MISSING: $1 (/$2/)"
		fails=$((fails + 1))
	fi
}
expect "systemd reached multi-user.target, nothing failed" '^\$ systemctl is-system-running --wait$'
grep -A1 -- '^\$ systemctl is-system-running --wait$' "$T" | grep -qx running || { note "MISSING: system state 'running'"; fails=$((fails + 1)); }
expect "no modules-load entry (not loaded by a script)" '^no modules-load entry for migtime$'
expect "migtime loaded" '^migtime '
expect "the ivshmem device bound to migtime" '0x1af4:0x1110 migtime$'
expect "modprobe goes through the package's build-ID hook" '^install migtime /usr/libexec/migtime/check-kernel'
expect "udev's load ran the hook, which accepted this kernel" 'systemd-udevd.*migtime: running kernel .* matches'
expect "/dev/migtime is 0440 root:_migtime" '^cr--r----- 1 root _migtime .* /dev/migtime$'
expect "the companion is active" '^active$'
expect "its primary group is _migtime (the devices' group)" '^Group=_migtime$'
expect "with CAP_SYS_TIME only (0x2000000)" '^CapEff:[[:space:]]+0000000002000000$'
expect "it holds /dev/migtime open" '-> /dev/migtime$'
expect "the module stepped by Tout" 'kernel: migtime: event 1 seq=1 stepped intended_ns=50000000'
if [ "$DAEMON" = chrony ]; then
	expect "it runs as _chrony (the generator's drop-in: chrony is installed)" '^User=_chrony$'
	expect "chronyc reached chronyd from the sandbox" 'chronyd: reset sources.* -> .*200 OK'
	expect "chronyd synchronised to 10.0.2.2" '^\^\* 10\.0\.2\.2'
	expect "the companion acted on migration_seq 1" 'action 1: migration_seq=1: migtime event 1 outcome=stepped'
	expect "chronyd normal after the step" '^Leap status *: Normal$'
else
	expect "it runs as _migtime (no chrony)" '^User=_migtime$'
	expect "timesyncd started at boot" '^timesyncd: active$'
	expect "timesyncd synchronised to 10.0.2.2" '^synchronized$'
	expect "timesyncd saw the module's step and re-synced at once" 'systemd-timesyncd.*System time changed\. Resyncing'
fi
[ "$fails" = 0 ] || die "$fails expectation(s) missing from $T"
stage "all expectations met ($DAEMON); transcript: $T"
