#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Self-test of the gates scripts/lint runs: scripts/check-commits and
# scripts/lint-limits, each against a scratch git repository that breaks (or
# keeps) one rule, so that a gate that stops failing is noticed.
#
#   tests/gates.sh      KTAP on stdout; exit 0 when every case passed
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.org GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.org
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
N=0 FAILED=0

# expect WANT NAME CMD...: run CMD (output to $T/out); WANT is pass or fail.
expect() {
	local want=$1 name=$2 got=pass
	shift 2
	N=$((N + 1))
	"$@" >"$T/out" 2>&1 || got=fail
	if [ "$got" = "$want" ]; then
		echo "ok $N $name"
	else
		echo "not ok $N $name"
		sed 's/^/# /' "$T/out"
		FAILED=$((FAILED + 1))
	fi
}

# Commit messages ---------------------------------------------------------
C="$T/commits"
git init -q "$C"
commit() { git -C "$C" commit -q --allow-empty -m "$1"; }
commit "Old history, grandfathered, with a subject far longer than seventy-two characters"
base=$(git -C "$C" rev-parse HEAD)
cc() { "$ROOT/scripts/check-commits" -C "$C" --base "$base"; }
expect pass "commits: none after the baseline" cc
commit "Add a thing"$'\n\n'"Because the other thing needed it."
expect pass "commits: a subject and a body" cc
git -C "$C" tag good
commit "$(printf 'x%.0s' {1..73})"$'\n\n'"Body."
expect fail "commits: a 73-character subject fails" cc
git -C "$C" reset -q --hard good
commit "$(printf 'x%.0s' {1..72})"$'\n\n'"Body."
expect pass "commits: a 72-character subject passes" cc
git -C "$C" reset -q --hard good
commit "Add a thing"
expect fail "commits: no body fails" cc
git -C "$C" reset -q --hard good
commit "Add a thing"$'\n\n'"Signed-off-by: t <t@example.org>"
expect fail "commits: a body of trailers only fails" cc
git -C "$C" reset -q --hard good
commit "Add a thing"$'\n'"glued to the subject"
expect fail "commits: no blank line after the subject fails" cc
commit "Fine"$'\n\n'"Fine."
expect fail "commits: a bad commit under a good one still fails" cc
git -C "$C" reset -q --hard good
git -C "$C" checkout -q --orphan other
commit "Unrelated"
expect pass "commits: baseline not an ancestor: skipped" cc
expect pass "commits: not a git checkout: skipped" "$ROOT/scripts/check-commits" -C "$T"

# Size limits -------------------------------------------------------------
L="$T/limits"
mkdir -p "$L/scripts" "$L/rust" "$L/src"
cp "$ROOT/scripts/lib.sh" "$ROOT/scripts/lint-limits" "$L/scripts/"
git init -q "$L"
: >"$L/scripts/lint-allow"
# body NAME LINES: a C function with LINES lines of code between its braces
# (a blank line and a comment inside, which do not count).
cbody() {
	printf 'static int %s(void)\n{\n\tint x = 0;\n\n\t/* not counted */\n' "$1"
	for _ in $(seq 2 "$2"); do printf '\tx++;\n'; done
	printf '}\n'
}
rsbody() {
	printf 'pub fn %s() -> u32 {\n    let mut x = 0;\n    // not counted\n' "$1"
	for _ in $(seq 2 "$2"); do printf '    x += 1;\n'; done
	printf '}\n'
}
shbody() {
	printf '%s() {\n\tlocal x=0\n\t# not counted\n' "$1"
	# shellcheck disable=SC2016 # the generated script's own arithmetic
	for _ in $(seq 2 "$2"); do printf '\tx=$((x + 1))\n'; done
	printf '}\n'
}
ll() { git -C "$L" add -A && "$L/scripts/lint-limits"; }
cbody f 80 >"$L/src/a.c"
rsbody f 80 >"$L/rust/m.rs"
shbody f 80 >"$L/scripts/s"
expect pass "limits: functions of 80 lines pass" ll
cbody f 81 >"$L/src/a.c"
expect fail "limits: a C function of 81 lines fails" ll
echo "temp src/a.c:f being cut down" >"$L/scripts/lint-allow"
expect pass "limits: an allow-listed C function passes" ll
cbody f 80 >"$L/src/a.c"
expect fail "limits: an allow-list entry within the limit fails" ll
: >"$L/scripts/lint-allow"
expect pass "limits: back within the limit" ll
rsbody f 81 >"$L/rust/m.rs"
expect fail "limits: a module Rust function of 81 lines fails" ll
rsbody f 80 >"$L/rust/m.rs"
shbody f 81 >"$L/scripts/s"
expect fail "limits: a shell function of 81 lines fails" ll
shbody f 80 >"$L/scripts/s"
seq 400 >"$L/src/b.h"
expect pass "limits: a file of 400 lines passes" ll
seq 401 >"$L/src/b.h"
expect fail "limits: a file of 401 lines fails" ll
echo "data src/b.h a table" >"$L/scripts/lint-allow"
expect pass "limits: an allow-listed file passes" ll
echo "data src/b.h" >"$L/scripts/lint-allow"
expect fail "limits: an allow-list entry without a reason fails" ll
: >"$L/scripts/lint-allow"
seq 10 >"$L/src/b.h"
printf '%s\n' "$(rsbody g 81)" >"$L/src/h.rs"
printf '{"reason":"compiler-message","message":{"code":{"code":"clippy::too_many_lines"},"message":"this function has too many lines (81/80)","spans":[{"file_name":"%s","line_start":1}]}}\n' \
	"$L/src/h.rs" >"$T/clippy.json"
expect pass "limits: a host crate's function is left to clippy" ll
llc() { git -C "$L" add -A && "$L/scripts/lint-limits" "$T/clippy.json"; }
expect fail "limits: clippy's too_many_lines fails" llc
echo "temp src/h.rs:g being cut down" >"$L/scripts/lint-allow"
expect pass "limits: clippy's finding allow-listed passes" llc

echo "1..$N"
[ "$FAILED" = 0 ]
