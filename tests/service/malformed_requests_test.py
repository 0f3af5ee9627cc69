"""Abuse of the Inference service with raw bytes (grpcio's generic calls, no generated stubs): a string
field that is not UTF-8 and a truncated message get INVALID_ARGUMENT naming the problem, the log stays
quiet (no libprotobuf line per request, rejections rate-limited), and valid requests still work.

    python3 tests/service/malformed_requests_test.py BIN_DIR SOURCE_DIR
"""
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

BIN_DIR, SRC = sys.argv[1], sys.argv[2]
GENERATE = "/layerskip.v1.Inference/Generate"
COMPLETE = "/layerskip.v1.Inference/Complete"
TOKENIZE = "/layerskip.v1.Inference/Tokenize"


def field(number, payload):
    """A length-delimited field (wire type 2), payload < 128 bytes."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def varint_field(number, value):
    assert value < 128
    return bytes([number << 3, value])


class MalformedRequests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stderr = tempfile.NamedTemporaryFile(prefix="ls_coord_", suffix=".log", delete=False)
        cls.proc = subprocess.Popen(
            [os.path.join(BIN_DIR, "layerskip-coordinator"), "--model", os.path.join(SRC, "models/tiny-random"),
             "--listen", "127.0.0.1:0", "--threads", "1"],
            stdout=subprocess.PIPE, stderr=cls.stderr, text=True)
        port = None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = cls.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"\(port (\d+)\)", line)
            if m:
                port = int(m.group(1))
            if line.strip().endswith("serving"):
                break
        assert port, "the coordinator did not start: " + open(cls.stderr.name).read()
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.proc.terminate()
        cls.proc.wait(30)
        os.unlink(cls.stderr.name)

    def unary(self, method, payload):
        call = self.channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        return call(payload, timeout=30)

    def stream(self, method, payload):
        call = self.channel.unary_stream(method, request_serializer=None, response_deserializer=None)
        return list(call(payload, timeout=30))

    def expect_invalid(self, fn, method, payload, needle):
        with self.assertRaises(grpc.RpcError) as e:
            fn(method, payload)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, e.exception.details())
        self.assertIn(needle, e.exception.details())

    def test_invalid_utf8_and_truncated_messages(self):
        bad_prompt = field(1, b"\xff\xfe hello") + varint_field(3, 4)
        bad_stop = field(1, b"hello") + field(8, b"ok") + field(8, b"\xc0\x80")  # overlong NUL
        truncated = field(1, b"hello")[:4]
        wrong_length = bytes([1 << 3 | 2, 100]) + b"abc"
        self.expect_invalid(self.stream, GENERATE, bad_prompt, "field 'prompt' of layerskip.v1.GenerateRequest is not valid UTF-8")
        self.expect_invalid(self.stream, GENERATE, bad_stop, "field 'stop'")
        self.expect_invalid(self.stream, GENERATE, truncated, "malformed layerskip.v1.GenerateRequest")
        self.expect_invalid(self.stream, GENERATE, wrong_length, "malformed")
        self.expect_invalid(self.stream, GENERATE, b"\xff\xff\xff", "malformed")
        self.expect_invalid(self.unary, COMPLETE, bad_prompt, "not valid UTF-8")
        self.expect_invalid(self.unary, COMPLETE, truncated, "malformed")
        self.expect_invalid(self.unary, TOKENIZE, field(1, b"\xed\xa0\x80"), "not valid UTF-8")  # a surrogate
        # A flood: every request answered, the log does not grow with it.
        for _ in range(200):
            self.expect_invalid(self.stream, GENERATE, bad_prompt, "UTF-8")
        log = open(self.stderr.name, errors="replace").read()
        self.assertNotIn("libprotobuf", log)
        self.assertLessEqual(log.count("rejected a request"), 3, log)
        self.assertIn("rejected a request from", log)

    def test_valid_requests_still_work(self):
        # prompt_ids [5, 7] (packed field 2), max_tokens 4 (field 3), valid UTF-8 text in stop.
        ok = field(2, bytes([5, 7])) + varint_field(3, 4) + field(8, "ünïcödé".encode())
        messages = self.stream(GENERATE, ok)
        self.assertGreaterEqual(len(messages), 1)
        self.assertGreater(len(self.unary(COMPLETE, ok)), 0)
        self.assertGreater(len(self.unary(TOKENIZE, field(1, "héllo wörld".encode()))), 0)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
