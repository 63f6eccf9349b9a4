#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Dry run of the scripts' control flow from an empty MIGTIME_CACHE (what a
# fresh machine sees), in seconds: scripts/setup, scripts/build-kernel (cold,
# then warm, then a second configuration seeded from the first, then the
# pristine --no-patches tree) and scripts/build-module run for real under
# `set -euo pipefail`, with every command that would install, download or
# compile replaced by a stub on PATH (apt-get, dpkg, dpkg-query, sudo,
# cargo, make, patch, qemu-system-x86_64, a rustc; tee redirects /etc to a
# scratch folder). The kernel source is a tiny tarball with a stub
# merge_config.sh. Catches what a warm cache hides, such as build-kernel
# dying on the `ls` of a cache with no finished kernel.
#
#   tests/cold-path.sh      KTAP on stdout; exit 0 when every step passed
#
# Run by `cargo test -p migtime-harness` (tests/harness/tests/cold_path.rs),
# so `make check` counts it with the host tests.
# The stubs are written in single quotes on purpose: they expand when they run.
# shellcheck disable=SC2016
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
STUB="$T/stub"
mkdir -p "$STUB" "$T/cache" "$T/etc" "$T/usr/src" "$T/rustlib/core"
export MIGTIME_CACHE="$T/cache" MIGTIME_STUB_STATE="$T/state" MIGTIME_STUB_ETC="$T/etc"
export KERNEL_RUSTC="$STUB/rustc" RUST_LIB_SRC="$T/rustlib" KERNEL_CLIPPY_DRIVER="$STUB/rustc"
export RUST_DEB_VERSION=1.85.0+dfsg3-1~deb12u3
mkdir -p "$MIGTIME_STUB_STATE"
KVER=7.3.4-1~bpo13+1

# A tiny "linux-source" tarball: what the scripts read from the source.
KS="$T/ksrc/linux-source-7.3"
mkdir -p "$KS/scripts/kconfig" "$KS/tools/testing/selftests"
echo "# stub kernel Makefile" >"$KS/Makefile"
: >"$KS/tools/testing/selftests/kselftest.h"
cat >"$KS/scripts/kconfig/merge_config.sh" <<'EOF'
#!/bin/sh
# stub: merge_config.sh -m -O OUT BASE FRAGMENT...: append the fragments.
out=$3; base=$4; shift 4
cat "$@" >>"$base"
echo "merged into $out"
EOF
chmod +x "$KS/scripts/kconfig/merge_config.sh"
tar -C "$T/ksrc" -cJf "$T/usr/src/linux-source-7.3.tar.xz" linux-source-7.3

stub() { printf '#!/usr/bin/env bash\n%s\n' "$2" >"$STUB/$1"; chmod +x "$STUB/$1"; }
# Installed packages are files in the state folder; apt-get install creates them.
stub dpkg-query 'name=${!#}; f="$MIGTIME_STUB_STATE/pkg-$name"
[ -f "$f" ] || exit 1
case "$*" in *Status-Abbrev*) printf "ii %s" "$(cat "$f")" ;; *) cat "$f" ;; esac'
stub apt-get 'echo "apt-get $*" >>"$MIGTIME_STUB_STATE/apt.log"
[ "$1" = install ] || exit 0
for a in "$@"; do
	case "$a" in -*|install) continue ;; esac
	n=${a%%=*}; n=${n%%/*}; v=${a#*=}; [ "$v" = "$a" ] && v=1
	[ "$n" = linux-source-7.3 ] && v='"$KVER"'
	echo "$v" >"$MIGTIME_STUB_STATE/pkg-$n"
	[ "$n" = qemu-system-x86 ] && touch "$MIGTIME_STUB_STATE/qemu"
done; exit 0'
stub dpkg '[ "$1" = -L ] && [ ! -f "$MIGTIME_STUB_STATE/no-tarball" ] && echo "'"$T"'/usr/src/linux-source-7.3.tar.xz"; exit 0'
stub sudo '"$@"'
stub tee 'a=(); for x in "$@"; do case "$x" in /etc/*) x="$MIGTIME_STUB_ETC/${x//\//_}" ;; esac; a+=("$x"); done
exec /usr/bin/tee "${a[@]}"'
stub qemu-system-x86_64 '[ -f "$MIGTIME_STUB_STATE/qemu" ] || exit 1; echo "QEMU emulator version 10.0.2"'
stub qemu-img '[ -f "$MIGTIME_STUB_STATE/qemu" ] || exit 1'
stub rustc 'echo "rustc 1.85.0 (stub)"'
stub cargo 'echo "cargo $*" >>"$MIGTIME_STUB_STATE/cargo.log"
root=; while [ $# -gt 0 ]; do [ "$1" = --root ] && root=$2; shift; done
mkdir -p "$root/bin"; printf "#!/bin/sh\necho bindgen 0.72.1\n" >"$root/bin/bindgen"; chmod +x "$root/bin/bindgen"'
stub patch 'echo "patch $*" >>"$MIGTIME_STUB_STATE/patch.log"; cat >/dev/null'
# make -C SRC O=OUT ... TARGET...: create what the scripts look for.
stub make 'echo "make $*" >>"$MIGTIME_STUB_STATE/make.log"
out=; m=; for a in "$@"; do case "$a" in O=*) out=${a#O=} ;; M=*) m=${a#M=} ;; esac; done
[ -n "$m" ] && exit 0
for a in "$@"; do case "$a" in
	tinyconfig) echo "CONFIG_64BIT=y" >"$out/.config" ;;
	bzImage) mkdir -p "$out/arch/x86/boot" "$out/rust"; : >"$out/arch/x86/boot/bzImage"; : >"$out/rust/libkernel.rmeta" ;;
esac; done; exit 0'
export PATH="$STUB:$PATH"

N=0 FAILED=0
echo "TAP version 13"
echo "1..9"
# step NAME CMD...: run CMD (output in $T/NAME.log), one result line.
step() {
	local name=$1
	shift
	N=$((N + 1))
	if "$@" >"$T/$name.log" 2>&1; then
		echo "ok $N $name"
	else
		sed 's/^/# /' "$T/$name.log" | tail -n 30
		echo "not ok $N $name"
		FAILED=$((FAILED + 1))
	fi
}

step setup_from_empty_cache "$ROOT/scripts/setup"
step setup_installed_everything bash -c "[ -f '$MIGTIME_STUB_STATE/pkg-linux-source-7.3' ] && [ -f '$MIGTIME_STUB_STATE/qemu' ] && [ -x '$MIGTIME_CACHE/tools/bindgen-0.72.1/bin/bindgen' ] && [ -f '$MIGTIME_CACHE/src/linux-source-7.3-$KVER/.migtime-unpacked' ]"
step setup_warm_is_quiet bash -c "'$ROOT/scripts/setup' >'$T/warm.out' 2>&1 && ! grep -q installing '$T/warm.out'"
step build_kernel_cold bash -c "'$ROOT/scripts/build-kernel' >'$T/k1' && [ -f \"\$(tail -n1 '$T/k1')/.migtime-done\" ]"
step build_kernel_warm bash -c "'$ROOT/scripts/build-kernel' 2>'$T/k2.err' >'$T/k2' && [ \"\$(tail -n1 '$T/k1')\" = \"\$(tail -n1 '$T/k2')\" ] && grep -q cached '$T/k2.err'"
printf 'CONFIG_DEBUG_KERNEL=y\n' >"$T/extra.config"
step build_kernel_seeded bash -c "'$ROOT/scripts/build-kernel' '$ROOT/kconfig/guest.config' '$T/extra.config' >'$T/k3' 2>'$T/k3.err' && grep -q seeding '$T/k3.err' && [ -f \"\$(tail -n1 '$T/k3')/.migtime-done\" ]"
step build_kernel_no_patches "$ROOT/scripts/build-kernel" --no-patches
step build_module bash -c "'$ROOT/scripts/build-module' | tail -n1 | grep -q 'rust/migtime.ko$'"
# A package without its tarball: setup must say so, not die silently.
rm -rf "$MIGTIME_CACHE/src"
touch "$MIGTIME_STUB_STATE/no-tarball"
step setup_says_why_without_tarball bash -c "! '$ROOT/scripts/setup' >'$T/nt.out' 2>&1 && grep -q 'no source tarball' '$T/nt.out'"
[ "$FAILED" = 0 ]
