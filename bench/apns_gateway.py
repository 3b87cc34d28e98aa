"""The local APNs test server as its own process, for the push benchmark.

``python bench/apns_gateway.py DIR PORTFILE``: serves on 127.0.0.1 with the push PKI in DIR
(made by ``tests.pushcerts.make_push_pki``), writes its port to PORTFILE, answers 200.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import reactor

from tests.apns_server import FakeAPNs, Reply


def main() -> None:
    directory, port_file = Path(sys.argv[1]), Path(sys.argv[2])
    server = FakeAPNs(max_concurrent_streams=1000)
    server.answer = lambda request: Reply(200)
    port = server.listen(
        directory / "gateway.pem", directory / "gateway.key", directory / "push-ca.pem"
    )
    port_file.write_text(str(port))
    reactor.run()


if __name__ == "__main__":
    main()
