"""The fake DEP service (tests/fakedep.py) as its own process for the DEP benchmark, so the
benchmark's memory figures are the poller's alone.

``python bench/fakedep_server.py DIR DEVICES``: prints one JSON line (url, ca_file, token),
then reads commands from stdin: ``modify N`` changes N devices, ``quit`` stops.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, stdio, task
from twisted.protocols.basic import LineReceiver

from tests.fakedep import FakeDEP


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, fake: FakeDEP, done: defer.Deferred[None]) -> None:
        self.fake = fake
        self.done = done

    def lineReceived(self, line: bytes) -> None:
        words = line.decode().split()
        if words[:1] == ["modify"]:
            serials = list(self.fake.devices)[: int(words[1])]
            for n, serial in enumerate(serials):
                self.fake.modify(serial, description=f"bench change {n}")
            self.sendLine(b"ok")
        elif words[:1] == ["quit"]:
            self.done.callback(None)


async def main(reactor: object, directory: str, devices: str) -> None:
    fake = FakeDEP(Path(directory))
    fake.require_department = False
    fake.require_support_phone = False
    fake.session_lifetime = 24 * 3600
    fake.add_devices(int(devices))
    await fake.start()
    print(
        json.dumps({"url": fake.url, "ca_file": str(fake.ca_file), "token": fake.token_json()}),
        flush=True,
    )
    done: defer.Deferred[None] = defer.Deferred()
    stdio.StandardIO(Commands(fake, done))
    await done
    await fake.stop()


if __name__ == "__main__":
    task.react(lambda r: defer.ensureDeferred(main(r, sys.argv[1], sys.argv[2])))
