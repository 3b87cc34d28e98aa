"""Comparison servers for the device-channel benchmark, each run as its own process.

``python bench/servers.py bare CONFIG``: a bare twisted.web responder (200, empty body to
every PUT) behind the very same mTLS options as the device listener: the ceiling.

``python bench/servers.py endpoint CONFIG``: the real device routes (Klein) and store, with
nothing else in the process (no logging, no admin listener, no access log, no metrics).

``python bench/servers.py unrouted CONFIG``: the same endpoint and store without Klein: its
handler behind a plain twisted.web Resource (the bench's PUTs only; a failure is a 500), to
weigh what Klein's render costs a device message.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from mdmappliance.app.device_listener import channel_policy, device_endpoint
from mdmappliance.app.reactor import global_reactor
from mdmappliance.app.tls import device_tls_options
from mdmappliance.config import load_config
from mdmappliance.device.routes import DeviceEndpoint
from mdmappliance.store import Store


class Bare(Resource):
    isLeaf = True

    def render_PUT(self, request: Request) -> bytes:
        request.content.read() if request.content is not None else b""
        request.setHeader(b"content-length", b"0")
        return b""


class Unrouted(Resource):
    """The device endpoint's handler called straight from twisted.web (no Klein)."""

    isLeaf = True

    def __init__(self, endpoint: DeviceEndpoint) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.checkin_path = endpoint.paths[0].encode()

    def render_PUT(self, request: Request) -> Any:
        checkin_only = request.path == self.checkin_path and len(set(self.endpoint.paths)) == 2
        done = self.endpoint.handle(request, checkin_only=checkin_only)

        def answer(body: bytes) -> None:
            request.write(body)
            request.finish()

        def failed(failure: Failure) -> None:
            failure.printTraceback()
            request.setResponseCode(500)
            request.finish()

        done.addCallbacks(answer, failed)
        return NOT_DONE_YET


def main(kind: str, config_path: str) -> None:
    reactor = global_reactor()
    config = load_config(config_path)
    if kind == "bare":
        resource: IResource = Bare()
    else:
        store = Store.configured(config.store, reactor)
        store.startService()
        reactor.addSystemEventTrigger("before", "shutdown", store.stopService)
        endpoint = device_endpoint(config, reactor, store, channel_policy(config, reactor))
        resource = Unrouted(endpoint) if kind == "unrouted" else endpoint.resource()
    endpoint_ = SSL4ServerEndpoint(
        reactor, config.device.port, device_tls_options(config), interface="127.0.0.1"
    )
    endpoint_.listen(Site(resource))
    print("listening", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
