# shellcheck shell=bash
# Common settings and helpers for migtime's scripts. Source it; do not run it.
#
# Every path and version the pipeline uses is defined here once. Each can be
# overridden from the environment (see README.md, "Configuration").

set -euo pipefail

MIGTIME_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Where everything built or downloaded outside the clone lives.
MIGTIME_CACHE=${MIGTIME_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/migtime}

# Pinned toolchain. rustc and rust-web-src must be the very same version.
RUST_DEB_VERSION=${RUST_DEB_VERSION:-1.85.0+dfsg3-1~deb12u3}
BINDGEN_VERSION=${BINDGEN_VERSION:-0.72.1}
LLVM_VERSION=${LLVM_VERSION:-19}
KERNEL_SOURCE_PKG=${KERNEL_SOURCE_PKG:-linux-source-7.3}
KERNEL_SOURCE_SUITE=${KERNEL_SOURCE_SUITE:-trixie-backports}
QEMU_SUITE=${QEMU_SUITE:-bookworm-backports}

BINDGEN_ROOT="$MIGTIME_CACHE/tools/bindgen-$BINDGEN_VERSION"
BINDGEN="$BINDGEN_ROOT/bin/bindgen"
LLVM_BIN=/usr/lib/llvm-$LLVM_VERSION/bin
KERNEL_RUSTC=${KERNEL_RUSTC:-/usr/bin/rustc}
# The rustfmt of the formatting gate (scripts/lint), Debian's 1.85 like the
# kernel's rustc: rustup's newer rustfmt formats some constructs differently.
RUSTFMT=${RUSTFMT:-/usr/bin/rustfmt}
export RUSTFMT
RUST_LIB_SRC=${RUST_LIB_SRC:-/usr/lib/rustlib/src/rust/library}

# Accelerator for the guests. KVM on these machines is a software shim that
# initialises and then kills the guest, so TCG is the default; override with
# MIGTIME_ACCEL=kvm on a machine with real VMX/SVM.
MIGTIME_ACCEL=${MIGTIME_ACCEL:-tcg}

if [ -t 1 ]; then _B=$'\e[1m' _R=$'\e[31m' _G=$'\e[32m' _N=$'\e[0m'; else _B='' _R='' _G='' _N=''; fi

# Start time of the current script, for elapsed-time stage lines.
_MIGTIME_T0=${_MIGTIME_T0:-$(date +%s)}
export _MIGTIME_T0

# stage TEXT: print a progress line with the elapsed time.
stage() {
	local now
	now=$(date +%s)
	printf '%s==> [%4ss] %s%s\n' "$_B" "$((now - _MIGTIME_T0))" "$*" "$_N"
}

# note TEXT: an indented detail line.
note() { printf '    %s\n' "$*"; }

# die TEXT: print an error and exit non-zero.
die() {
	printf '%serror:%s %s\n' "$_R" "$_N" "$*" >&2
	exit 1
}

# run_logged LOG CMD...: run CMD with all output to LOG; on failure print the
# log's tail and where the full log is, then exit non-zero.
run_logged() {
	local log=$1
	shift
	mkdir -p "$(dirname "$log")"
	if ! "$@" >"$log" 2>&1; then
		printf '%serror:%s command failed: %s\n' "$_R" "$_N" "$*" >&2
		printf -- '---- last 40 lines of %s ----\n' "$log" >&2
		tail -n 40 "$log" >&2
		printf -- '---- full log: %s ----\n' "$log" >&2
		exit 1
	fi
}

# Debian's source version of the installed linux-source package (e.g. 7.3.4-1~bpo13+1).
kernel_source_version() {
	dpkg-query -W -f='${Version}' "$KERNEL_SOURCE_PKG" 2>/dev/null || true
}

# Where the pristine kernel source is unpacked for a given package version.
kernel_src_dir() {
	printf '%s/src/%s-%s\n' "$MIGTIME_CACHE" "$KERNEL_SOURCE_PKG" "$(kernel_source_version)"
}

# The project's kernel patch series (git format-patch files, applied in name
# order to a copy of the pristine source; see kernel-patches/README.md).
KERNEL_PATCHES_DIR="$MIGTIME_ROOT/kernel-patches"

# kernel_patches: the series' files, in order, one per line.
kernel_patches() {
	local p
	for p in "$KERNEL_PATCHES_DIR"/*.patch; do
		[ -f "$p" ] && printf '%s\n' "$p"
	done
	return 0
}

# Hash of the series' contents ("none" without patches).
kernel_patches_key() {
	local -a files
	mapfile -t files < <(kernel_patches)
	if [ "${#files[@]}" -eq 0 ]; then echo none; return; fi
	cat "${files[@]}" | sha256sum | cut -c1-12
}

# patched_src_dir: a copy of the pristine source with the series applied,
# made once per series ($MIGTIME_CACHE/src/<pristine>-patched-<key>). The
# copy hard-links every file the series does not touch, so it costs seconds
# and a few megabytes; the pristine tree is never modified. Prints its path.
patched_src_dir() {
	local src key dst tmp f p
	src=$(kernel_src_dir)
	key=$(kernel_patches_key)
	dst="$src-patched-$key"
	if [ -f "$dst/.migtime-patched" ]; then
		printf '%s\n' "$dst"
		return
	fi
	tmp="$dst.tmp"
	rm -rf "$tmp"
	cp -al "$src" "$tmp"
	rm -f "$tmp/.migtime-unpacked"
	while IFS= read -r p; do
		# Give every file the patch touches its own inode before patching, so
		# the hard links back to the pristine tree are never written through.
		while IFS= read -r f; do
			if [ -f "$tmp/$f" ]; then
				cp --remove-destination "$src/$f" "$tmp/$f"
			fi
		done < <(sed -n 's|^+++ b/||p; s|^--- a/||p' "$p" | sort -u)
		if ! patch -d "$tmp" -p1 --forward --quiet --no-backup-if-mismatch <"$p" >"$tmp.log" 2>&1; then
			cat "$tmp.log" >&2
			rm -rf "$tmp"
			die "kernel patch does not apply to $(kernel_source_version): $p"
		fi
	done < <(kernel_patches)
	rm -f "$tmp.log"
	kernel_patches | xargs -r -n1 basename >"$tmp/.migtime-patched"
	mv "$tmp" "$dst"
	printf '%s\n' "$dst"
}

# Hash of everything that decides the guest kernel build: the kconfig
# fragment(s), the patch series (or "none"), the toolchain versions and the
# source version.
kernel_key() {
	local patches=$1 frag
	shift
	{
		kernel_source_version
		echo "rustc=$("$KERNEL_RUSTC" --version 2>/dev/null)"
		echo "bindgen=$BINDGEN_VERSION llvm=$LLVM_VERSION"
		echo "patches=$patches"
		for frag in "$@"; do cat "$frag"; done
	} | sha256sum | cut -c1-12
}

# The environment every kernel/module make invocation needs.
kernel_make_env() {
	export PATH="$LLVM_BIN:$BINDGEN_ROOT/bin:$PATH"
}

# Debian's clippy-driver matches the kernel's rustc; rustup's (first on PATH)
# does not accept the kernel's -Z flags.
KERNEL_CLIPPY_DRIVER=${KERNEL_CLIPPY_DRIVER:-/usr/bin/clippy-driver}

kmake_args() {
	printf '%s\n' LLVM=1 "RUSTC=$KERNEL_RUSTC" "RUST_LIB_SRC=$RUST_LIB_SRC" "BINDGEN=$BINDGEN" \
		"CLIPPY_DRIVER=$KERNEL_CLIPPY_DRIVER"
}

# prepare_guest [FRAGMENT...]: setup (unless MIGTIME_SKIP_SETUP=1), guest
# kernel (cached), module (CLIPPY=1: with the kernel's clippy), initramfs and
# the harness binary. Sets KDIR, BZIMAGE, KO, INITRD, HARNESS
# and BUILD. Honours a KDIR already set by the user.
# shellcheck disable=SC2034 # the variables are the caller's
prepare_guest() {
	if [ "${MIGTIME_SKIP_SETUP:-0}" != 1 ]; then
		stage "setup"
		"$MIGTIME_ROOT/scripts/setup"
	fi
	if [ -n "${KDIR:-}" ]; then
		stage "guest kernel: using KDIR=$KDIR"
	else
		KDIR=$("$MIGTIME_ROOT/scripts/build-kernel" "$@" | tail -n1)
	fi
	BZIMAGE="$KDIR/arch/x86/boot/bzImage"
	[ -f "$BZIMAGE" ] || die "no bzImage in $KDIR"
	KO=$("$MIGTIME_ROOT/scripts/build-module" "$KDIR" | tail -n1)
	BUILD="$MIGTIME_ROOT/build"
	# One initramfs per kernel tree: check and check-debug (or a demo) can run
	# side by side without booting each other's module.
	INITRD=$("$MIGTIME_ROOT/scripts/mkinitramfs" "$KO" "$BUILD/initramfs-$(basename "$KDIR").cpio.gz" | tail -n1)
	stage "harness: cargo build --release -p migtime-harness"
	run_logged "$BUILD/harness-build.log" cargo build --release -p migtime-harness
	HARNESS="${CARGO_TARGET_DIR:-$MIGTIME_ROOT/target}/release/migtime-harness"
}

# prepare_debian_guest: the module, .deb and symbol check for Debian 13's stock
# cloud kernel (scripts/build-debian-module, cached), and an initramfs for its
# unmodified vmlinuz. Sets DEBIAN_VMLINUZ, DEBIAN_KO, DEBIAN_KVER, DEBIAN_DEB,
# DEBIAN_INITRD and BUILD.
# shellcheck disable=SC2034 # the variables are the caller's
prepare_debian_guest() {
	local k v extra
	DEBIAN_DEB=$("$MIGTIME_ROOT/scripts/build-debian-module" | tail -n1)
	while IFS='=' read -r k v; do declare -g "$k=$v"; done < <("$MIGTIME_ROOT/scripts/build-debian-module" --print-env)
	BUILD="$MIGTIME_ROOT/build"
	# The guest gets the package's files (check-kernel, the recorded build
	# ID) and the module as built for another build of the release, for the
	# kernel-id scenario (mt_kcheck).
	extra="$BUILD/debian/initramfs-extra"
	rm -rf "$extra"
	dpkg-deb -x "$DEBIAN_DEB" "$extra"
	mkdir -p "$extra/lib/modules"
	"$MIGTIME_ROOT/scripts/build-debian-module" --other-build-ko "$extra/lib/modules/migtime-otherbuild.ko" >/dev/null
	DEBIAN_INITRD=$("$MIGTIME_ROOT/scripts/mkinitramfs" "$DEBIAN_KO" "$BUILD/initramfs-debian-$DEBIAN_KVER.cpio.gz" "$extra" | tail -n1)
}
