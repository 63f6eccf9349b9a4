#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Write a migtime page's host area (docs/abi.md) into an ivshmem backing file.

    debian-page.py FILE SEQ TOUT_NS TOTAL_NS

Version 1, size 64, flags 0, under the seqlock (seq_count odd while writing).
For tests/debian-image.sh: SEQ 0 at boot; SEQ 1 as a destination host writes
it after a migration.
"""

import mmap
import struct
import sys

path, seq, tout, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(path, "r+b") as f:
    m = mmap.mmap(f.fileno(), 4096)
    count = struct.unpack_from("<I", m, 8)[0]
    if count % 2:
        count += 1
    struct.pack_into("<I", m, 8, count + 1)
    struct.pack_into("<IHH", m, 0, 0x5447494D, 1, 64)
    struct.pack_into("<IQqq", m, 12, 0, seq, tout, total)
    struct.pack_into("<I", m, 8, count + 2)
    m.flush()
