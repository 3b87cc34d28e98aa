"""A fake Apple service (bench/fakedep_server.py, bench/fakevpp_server.py) as its own process:
it prints one JSON line with what the client needs, then takes commands on stdin, each
answered ``ok``, until ``quit``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.device_channel import REPO
from tests.support import subprocess_env


class FakeProcess:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None and process.stdin is not None
        self.process = process
        self.stdin, self.stdout = process.stdin, process.stdout
        self.started: dict[str, Any] = json.loads(self.stdout.readline())

    def command(self, line: str) -> None:
        self.stdin.write(line.encode() + b"\n")
        self.stdin.flush()
        assert self.stdout.readline().strip() == b"ok", line


@contextmanager
def fake_process(script: str, *args: str) -> Iterator[FakeProcess]:
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=subprocess_env(),
    )
    try:
        yield FakeProcess(process)
    finally:
        if process.stdin is not None:
            process.stdin.write(b"quit\n")
            process.stdin.close()
        process.wait(timeout=60)
