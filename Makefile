# migtime: migration-aware timekeeping for Linux guests.
#
#   make demo     set up; migrate and restore a guest on -device migtime, without and with migtime
#   make check    set everything up and run every test
#   make help     all targets
#
# KDIR=/path/to/kernel builds and tests against another Rust-enabled kernel
# tree instead of the cached guest kernel. Everything downloaded or built
# outside the clone lives in $(MIGTIME_CACHE) (default ~/.cache/migtime).

SHELL := /bin/bash
export KDIR
export MIGTIME_CACHE

.PHONY: clean-module-objects help setup kernel qemu module companion clippy lint rust-analyzer initramfs host-test check check-debug check-debian check-image debian-module deb demo bench fuzz fmt clean

help:
	@sed -n '2,9s/^# \{0,1\}//p' Makefile
	@echo
	@echo "Targets:"
	@echo "  setup          install packages, bindgen and the kernel source (idempotent)"
	@echo "  kernel         build or reuse the cached Rust-enabled guest kernel"
	@echo "  qemu           build or reuse the cached QEMU with -device migtime (prints its path)"
	@echo "  module         build migtime.ko into build/module/<tree>/ (KDIR= to choose the tree)"
	@echo "  companion      build the static guest companion (target/.../migtime-companion)"
	@echo "  clippy         build the module with CLIPPY=1 (kernel lint set); fails on any warning"
	@echo "  lint           the gates make check starts with: rustfmt 1.85, clippy -D warnings, shellcheck, module clippy"
	@echo "  rust-analyzer  write rust-project.json for the module"
	@echo "  initramfs      build build/initramfs.cpio.gz (busybox, module, guest tests)"
	@echo "  host-test      cargo test of the pure logic and the harness"
	@echo "  check          everything above, then every guest scenario under QEMU,"
	@echo "                 then the Debian subset on Debian 13's stock cloud kernel,"
	@echo "                 then the Debian 13 image with systemd on -device migtime"
	@echo "  check-debug    the same on a lockdep + KASAN + debug-objects guest kernel"
	@echo "  check-debian   only the scenarios on Debian 13's stock cloud kernel"
	@echo "  check-image    only the Debian 13 image scenarios (systemd, apt, -device migtime)"
	@echo "  debian-module  migtime.ko + .deb for Debian 13's cloud kernel (build/debian/)"
	@echo "  deb            the module and companion packages, lintian-checked (their paths: last two lines)"
	@echo "  demo           the main job: migrate and restore a guest on -device migtime, without and with migtime"
	@echo "  bench          measure migrations per configuration (JSON + markdown)"
	@echo "  fuzz           cargo-fuzz the pure logic: 10M executions (FUZZ_RUNS, FUZZ_SECONDS)"
	@echo "  fmt            rustfmt the module (kernel config) and the host crates"
	@echo "  clean          remove build outputs in the clone (not the cache)"

setup:
	@scripts/setup

kernel: setup
	@scripts/build-kernel >/dev/null

qemu: setup
	@scripts/build-qemu

module: setup
	@scripts/build-module $(KDIR)

companion:
	@scripts/build-companion

clippy: setup
	@CLIPPY=1 scripts/build-module $(KDIR)

lint: setup
	@scripts/lint

rust-analyzer: setup
	@kdir="$${KDIR:-$$(scripts/build-kernel | tail -n1)}"; \
	source scripts/lib.sh; kernel_make_env; mapfile -t a < <(kmake_args); \
	make -C "$$kdir" M="$$PWD" "$${a[@]}" rust-analyzer

initramfs: setup
	@ko=$$(scripts/build-module $(KDIR) | tail -n1) && scripts/mkinitramfs "$$ko" build/initramfs.cpio.gz >/dev/null

host-test:
	cargo test --workspace

check:
	@scripts/check --kernel all

check-debian: setup
	@scripts/check --kernel debian

check-image: setup
	@scripts/check --kernel image

debian-module: setup
	@scripts/build-debian-module

deb: setup
	@scripts/build-debian-packages

check-debug:
	@scripts/check --debug

demo:
	@scripts/demo

bench:
	@scripts/bench

# FUZZ_RUNS=N executions (default 10 million), FUZZ_SECONDS=S to stop sooner.
fuzz:
	@scripts/fuzz --runs $(or $(FUZZ_RUNS),10000000) $(or $(FUZZ_SECONDS),0)

# The same rustfmt as the lint gate (Debian's 1.85, $RUSTFMT).
fmt:
	@source scripts/lib.sh; ksrc=$$(kernel_src_dir); \
	"$$RUSTFMT" --edition 2021 --config-path "$$ksrc/.rustfmt.toml" rust/*.rs && \
	cargo fmt --all && cargo fmt --manifest-path rust/host/fuzz/Cargo.toml

# Objects of an in-tree module build (older checkouts built into rust/).
clean-module-objects:
	rm -f rust/*.o rust/*.ko rust/*.mod rust/*.mod.c rust/.*.cmd rust/modules.order rust/Module.symvers \
		modules.order Module.symvers .*.cmd

clean: clean-module-objects
	rm -rf build target
	rm -f rust-project.json
