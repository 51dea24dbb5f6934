"""Run, attempt and lease ids: prefix, 10 characters of milliseconds, 16 random, time-ordered."""

from __future__ import annotations

import re
import time

from tether.clock import _encode_id, new_id

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def test_known_values_are_spelled_in_crockford_base32() -> None:
    assert _encode_id(0, 0) == "0" * 26
    assert _encode_id(1, 0) == "0000000001" + "0" * 16
    assert _encode_id(0, 31) == "0" * 25 + "z"
    assert _encode_id(32, 32) == "0000000010" + "0" * 14 + "10"
    assert _encode_id((1 << 50) - 1, (1 << 80) - 1) == "z" * 26


def test_ids_carry_their_time_and_sort_in_creation_order() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id("run") for _ in range(5000)]
    assert all(re.fullmatch(r"run_[0-9a-hjkmnp-tv-z]{26}", i) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    ms = 0
    for c in ids[0][4:14]:
        ms = ms << 5 | CROCKFORD.index(c)
    assert before <= ms <= time.time_ns() // 1_000_000


def test_the_spelling_is_base32_of_the_130_bits() -> None:
    import base64
    import random

    to_crockford = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", CROCKFORD.encode())
    rng = random.Random(7)
    for _ in range(2000):
        ms, rand = rng.getrandbits(50), rng.getrandbits(80)
        padded = (ms << 80 | rand) << 6  # 136 bits: 17 bytes, of which 26 characters count
        expected = base64.b32encode(padded.to_bytes(17, "big"))[:26].translate(to_crockford)
        assert _encode_id(ms, rand) == expected.decode()
