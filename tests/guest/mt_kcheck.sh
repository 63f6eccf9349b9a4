#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest test (KTAP): the Debian package's kernel check, on the running kernel.
# The initramfs of `scripts/check --kernel debian` carries the files of the
# migtime-modules .deb (check-kernel, the recorded build ID); elsewhere (the
# project's kernel) this test is skipped (kselftest exit code 4).
#
#   1. check-kernel accepts the kernel the package was built for (the running
#      Debian kernel: its /sys/kernel/notes build ID is the recorded one);
#   2. it refuses another build of the same release (a recorded build ID that
#      is not the running kernel's), exit 1, and says why;
#   3. it refuses a kernel release the package has no module for;
#   4. the module itself, built as for another build of this release
#      (/lib/modules/migtime-otherbuild.ko, from build-debian-module
#      --other-build-ko), fails insmod with ENOEXEC and says why in the log
#      (rust/kernel_id.rs); migtime.ko is reloaded afterwards.
CHECK=/usr/libexec/migtime/check-kernel
LIB=/usr/lib/migtime
REL=$(uname -r)

echo "TAP version 13"
if [ ! -x "$CHECK" ] || [ ! -r "$LIB/$REL/build-id" ]; then
	echo "1..0 # SKIP no migtime-modules package for $REL in this guest"
	exit 4
fi
echo "1..4"
fails=0
ok() { echo "ok $1 $2"; }
notok() { echo "not ok $1 $2"; fails=$((fails + 1)); }

echo "# running kernel $REL, recorded build ID $(cat "$LIB/$REL/build-id")"
if out=$("$CHECK" 2>&1); then ok 1 "accepts the build it was made for"; else notok 1 "accepts the build it was made for"; fi
echo "# $out"

other=/tmp/mt_kcheck
mkdir -p "$other/$REL"
cp "$LIB/$REL/package-version" "$other/$REL/"
# Another build of the same release: same length, every digit changed.
tr '0-9a-f' '1-9a-f0' <"$LIB/$REL/build-id" >"$other/$REL/build-id"
if out=$(MIGTIME_LIBDIR=$other "$CHECK" 2>&1); then
	notok 2 "refuses another build of $REL"
else
	case "$out" in
		*"is another build"*) ok 2 "refuses another build of $REL" ;;
		*) notok 2 "refuses another build of $REL (unclear message)" ;;
	esac
fi
echo "# $out"

if out=$(MIGTIME_RELEASE=7.3.4+deb13-amd64 "$CHECK" 2>&1); then
	notok 3 "refuses a release it has no module for"
else
	ok 3 "refuses a release it has no module for"
fi
echo "# $out"

OTHER=/lib/modules/migtime-otherbuild.ko
if [ ! -f "$OTHER" ]; then
	echo "ok 4 another build's module refuses to load # SKIP no $OTHER"
else
	had=
	grep -q '^migtime ' /proc/modules && had=1 && rmmod migtime
	if insmod "$OTHER" 2>/tmp/mt_kcheck.err; then
		notok 4 "another build's module refuses to load (insmod succeeded)"
		rmmod migtime
	elif dmesg | grep -q 'migtime: built for the kernel build .* refusing to load'; then
		ok 4 "another build's module refuses to load"
	else
		notok 4 "another build's module refuses to load (no log line saying why)"
	fi
	echo "# $(cat /tmp/mt_kcheck.err)"
	dmesg | grep 'migtime: built for the kernel build' | tail -n 1 | sed 's/^/# /'
	[ -z "$had" ] || insmod /lib/modules/migtime.ko ivshmem=1 || { echo "# could not reload migtime.ko"; fails=$((fails + 1)); }
fi

echo "# Totals: pass:$((4 - fails)) fail:$fails xfail:0 xpass:0 skip:0 error:0"
[ "$fails" = 0 ]
