"""The fake VPP service (tests/fakevpp.py) as its own process for the VPP benchmark, so the
benchmark's memory figures are the sync's alone.

``python bench/fakevpp_server.py DIR USERS LICENSES``: prints one JSON line (service config
URL, ca_file, sToken), then reads commands from stdin: ``touch N`` changes N users, ``quit``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, stdio, task
from twisted.protocols.basic import LineReceiver

from tests.fakevpp import FakeVPP


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, fake: FakeVPP, done: defer.Deferred[None]) -> None:
        self.fake = fake
        self.done = done

    def lineReceived(self, line: bytes) -> None:
        words = line.decode().split()
        if words[:1] == ["touch"]:
            for n, user_id in enumerate(list(self.fake.users)[: int(words[1])]):
                self.fake.touch_user(user_id, email=f"changed{n}@example.com")
            self.sendLine(b"ok")
        elif words[:1] == ["quit"]:
            self.done.callback(None)


async def main(reactor: object, directory: str, users: str, licenses: str) -> None:
    fake = FakeVPP(Path(directory))
    fake.batch_size = 1000
    fake.add_users(int(users))
    fake.add_licenses(int(licenses))
    await fake.start()
    started = {
        "url": fake.service_config_url,
        "ca_file": str(fake.ca_file),
        "stoken": fake.stoken(),
    }
    print(json.dumps(started), flush=True)
    done: defer.Deferred[None] = defer.Deferred()
    stdio.StandardIO(Commands(fake, done))
    await done
    await fake.stop()


if __name__ == "__main__":
    task.react(lambda r: defer.ensureDeferred(main(r, *sys.argv[1:4])))
