#!/usr/bin/env python3
"""Write the seed corpus for the page_policy fuzz target (corpus/page_policy/).

Each seed is a 64-byte host area followed by 18-byte operations, as
fuzz_targets/page_policy.rs decodes them: op[0] % 5 = kind (0 honest update,
1 raw write, 2 stuck odd, 3 guest read, 4 guest read interleaved with an
update), op[1] = arg, op[2..10] = i64 value, op[10..18] = u64 extra.
"""
import os
import struct

MAGIC = int.from_bytes(b"MIGT", "little")


def host(seq=0, total=0, flags=0, count=0, valid=True):
    b = struct.pack("<IHHIIQqq24x", MAGIC, 1, 64, count, flags, seq, 0, total)
    b = bytearray(b)
    if valid:
        b[63] |= 1  # ask the target to keep the header valid
    return bytes(b)


def op(kind, arg=0, val=0, extra=0):
    return struct.pack("<BBqQ", kind, arg, val, extra)


READ = op(3, arg=0x40 | (8 << 2))  # refuse policy, 9 attempts
seeds = {
    "one-step": host() + op(0, 0, 2_000_000_000) + READ,
    "compensated": host() + op(0, 1, 0) + READ,
    "catch-up": host() + op(0, 0, 1_500_000_000) + op(0, 0, 700_000_000) + READ,
    "interleaved": host() + op(4, 0x40 | (4 << 2), 3_000_000_000, 0x5555_5555_5555_5555) + READ,
    "stuck-odd": host() + op(2) + READ,
    "raw-backwards": host(seq=5, total=10) + op(1, 16, 3) + READ,
    "huge": host() + op(0, 0, 10 * 86400 * 10**9) + op(3, 0x40 | (8 << 2), 0, 1 << 40) ,
    "negative": host(total=-(2**62)) + op(0, 0, -(2**62)) + READ,
    "bad-magic": bytes(64) + op(0, 0, 5) + READ,
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "page_policy")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {out}")
