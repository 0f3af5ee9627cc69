"""Writes the seed corpus of worker_service_fuzz (corpus/worker_service/): valid and edge-case requests of
each Worker method, hand-encoded in the protobuf wire format (field numbers from proto/layerskip/v1/
worker.proto). Byte 0 picks the method: 0 LoadShard, 1 Connect, 2 Draft, 3 Verify, 4 Accept, 5 Release.

    python3 tests/fuzz/service/make_corpus.py
"""
import hashlib
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "worker_service")


def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def v(num, x):  # varint field
    return varint(num << 3) + varint(x)


def ld(num, b):  # length-delimited field
    return varint(num << 3 | 2) + varint(len(b)) + b


def f32(num, x):
    return varint(num << 3 | 5) + struct.pack("<f", x)


def f64(num, x):
    return varint(num << 3 | 1) + struct.pack("<d", x)


def packed(num, vals):
    return ld(num, b"".join(varint(x) for x in vals))


def draft_seq(slot, cached, pending, max_drafts=3, temperature=None, uniforms=()):
    s = v(1, slot) + v(2, cached) + packed(3, pending) + v(4, max_drafts) + packed(5, [2])
    if temperature is not None:
        s += ld(6, f32(1, temperature) + v(2, 50) + f32(3, 0.9))
    if uniforms:
        s += ld(7, b"".join(struct.pack("<d", u) for u in uniforms))
    return s


def verify_seq(slot, cached, rows, drafts=(), want_logits=False):
    return v(1, slot) + v(2, cached) + v(3, rows) + packed(4, drafts) + v(5, int(want_logits))


CASES = {
    "load_stage0": b"\0" + v(2, 0) + v(3, 2) + v(4, 1) + v(5, 1) + ld(6, b"bf16") + v(7, 4) + v(8, 64) + v(11, 1),
    "load_stage1_f32": b"\0" + v(2, 2) + v(3, 4) + v(5, 1) + ld(6, b"f32") + v(7, 2) + v(8, 32) + v(12, 1),
    "load_bad_range": b"\0" + v(2, 3) + v(3, 1) + v(7, 1) + v(8, 16),
    "load_negative": b"\0" + v(2, (1 << 64) - 1) + v(3, 1 << 31) + v(7, 0) + ld(6, b"int8"),
    "connect_tcp_last": b"\1" + ld(1, b"tcp"),
    "connect_tcp_next": b"\1" + ld(1, b"tcp") + ld(2, b"127.0.0.1:9"),
    "connect_nccl": b"\1" + ld(1, b"nccl") + ld(3, b"\0" * 128) + v(4, 1) + v(5, 2),
    "draft_greedy": b"\2" + v(1, 1) + v(2, 2) + ld(5, draft_seq(0, 0, [1, 2, 3])),
    "draft_two_seqs": b"\2" + v(1, 2) + v(2, 2) + v(3, 1) + f32(4, 0.5)
    + ld(5, draft_seq(0, 0, [5, 6])) + ld(5, draft_seq(1, 0, [7], max_drafts=8)),
    "draft_sampling": b"\2" + v(1, 3) + v(2, 2) + ld(5, draft_seq(2, 0, [9, 10], temperature=0.8, uniforms=(0.1, 0.5, 0.9))),
    "draft_early_exit": b"\2" + v(1, 4) + v(6, 1) + ld(5, draft_seq(3, 0, [11, 12])),
    "draft_bad_slot": b"\2" + v(1, 5) + v(2, 2) + ld(5, draft_seq(99, 0, [1])),
    "draft_bad_token": b"\2" + v(1, 6) + v(2, 2) + ld(5, draft_seq(0, 0, [1 << 30])),
    "draft_long_pending": b"\2" + v(1, 7) + v(2, 2) + ld(5, draft_seq(1, 0, list(range(100)))),
    "verify": b"\3" + v(1, 1) + ld(2, verify_seq(0, 0, 6, drafts=[4, 5, 6])),
    "verify_logits": b"\3" + v(1, 3) + ld(2, verify_seq(2, 0, 5, drafts=[1, 2], want_logits=True)),
    "verify_negative_rows": b"\3" + v(1, 8) + ld(2, verify_seq(0, 0, (1 << 64) - 5)),
    "verify_many_rows": b"\3" + v(1, 9) + ld(2, verify_seq(0, 0, 1 << 30)) + ld(2, verify_seq(1, 0, 1 << 30)),
    "accept": b"\4" + v(1, 2) + packed(2, [0, 1]) + packed(3, [3, 1]),
    "accept_mismatch": b"\4" + v(1, 1) + packed(2, [0]) + packed(3, [1, 2]),
    "release": b"\5" + packed(1, [0, 1, 2, 3]),
    "release_bad": b"\5" + packed(1, [-1 & 0xFFFFFFFF, 1 << 20]),
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, data in CASES.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(CASES)} inputs in {OUT}")
