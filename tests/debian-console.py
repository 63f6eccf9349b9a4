#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Drive a Debian guest's serial console (tests/debian-image.sh).

    debian-console.py SOCKET < SCRIPT

Connects to QEMU's console socket, waits for the autologin shell prompt
(printing how long the boot took from the start of QEMU, MIGTIME_T_QEMU in
the environment, seconds since the epoch), then runs SCRIPT line by line:

    CMD             a shell command in the guest: prints "$ CMD" and its output
    !host CMD       a shell command on the host (its output is printed)
    !poweroff       `systemctl poweroff` in the guest; waits for QEMU to close
                    the console (prints the time from QEMU's start)
    # text          printed as a heading

Exit status 0 when every command ran (their own exit status is printed, not
judged: the calling script checks the transcript), 1 on a timeout.
"""

import os
import re
import socket
import subprocess
import sys
import time

PROMPT = re.compile(rb"root@migtime-guest:[^\n]*# $")
BOOT_TIMEOUT = float(os.environ.get("MIGTIME_BOOT_TIMEOUT", "300"))
CMD_TIMEOUT = float(os.environ.get("MIGTIME_CMD_TIMEOUT", "120"))


class Console:
    def __init__(self, path):
        deadline = time.time() + 30
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.buf = b""

    def read_until(self, pattern, timeout):
        deadline = time.time() + timeout
        while True:
            m = pattern.search(self.buf)
            if m:
                out, self.buf = self.buf[: m.start()], self.buf[m.end():]
                return out, m
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(self.buf[-2000:].decode(errors="replace"))
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise EOFError(self.buf[-2000:].decode(errors="replace"))
            self.buf += chunk

    def wait_eof(self, timeout):
        """Reads until QEMU closes the console (the guest powered off)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.s.settimeout(max(deadline - time.time(), 0.01))
            try:
                if not self.s.recv(65536):
                    return
            except socket.timeout:
                break
        raise TimeoutError("the guest did not power off")

    def send(self, line):
        self.s.sendall(line.encode() + b"\n")

    def run(self, cmd, timeout=CMD_TIMEOUT):
        # The markers are split in the command line, so the terminal's echo
        # of it never matches them.
        self.send(f"printf '%s\\n' '__MT''BEGIN__'; {cmd}; printf '__MT''END__ %s\\n' $?")
        self.read_until(re.compile(rb"__MTBEGIN__\r?\n"), timeout)
        out, m = self.read_until(re.compile(rb"__MTEND__ (\d+)\r?\n"), timeout)
        self.read_until(PROMPT, timeout)
        return out.decode(errors="replace").replace("\r", ""), int(m.group(1))


def main():
    con = Console(sys.argv[1])
    t_qemu = float(os.environ.get("MIGTIME_T_QEMU", time.time()))
    con.read_until(PROMPT, BOOT_TIMEOUT)
    print(f"# boot: shell prompt on ttyS0 {time.time() - t_qemu:.1f} s after QEMU started", flush=True)
    # A quiet, wide, pager-free terminal; kernel messages off the console.
    con.run("stty -echo cols 200; dmesg -n 1; export SYSTEMD_PAGER=cat PAGER=cat SYSTEMD_COLORS=0 TERM=dumb")
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.startswith("# "):
            print(f"\n{line}", flush=True)
        elif line == "!poweroff":
            con.send("systemctl poweroff")
            con.wait_eof(BOOT_TIMEOUT)
            print(f"# powered off {time.time() - t_qemu:.1f} s after QEMU started", flush=True)
            return 0
        elif line.startswith("!host "):
            r = subprocess.run(line[6:], shell=True, capture_output=True, text=True)
            print(f"host$ {line[6:]}\n{r.stdout}{r.stderr}", end="", flush=True)
        else:
            out, rc = con.run(line)
            print(f"$ {line}\n{out}" + (f"[exit {rc}]\n" if rc else ""), end="", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (TimeoutError, EOFError) as e:
        print(f"console: {type(e).__name__}; last output:\n{e}", file=sys.stderr)
        sys.exit(1)
