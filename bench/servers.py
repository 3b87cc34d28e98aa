"""Comparison servers for the device-channel benchmark, each run as its own process.

``python bench/servers.py bare CONFIG``: a bare twisted.web responder (200, empty body to
every PUT) behind the very same mTLS options as the device listener: the ceiling.

``python bench/servers.py raw CONFIG`` and ``python bench/servers.py klein CONFIG``: the
real device endpoint and store, served as the raw Resource or routed through a Klein app,
with nothing else in the process (no logging, no admin listener), to weigh the routing layer.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from klein import Klein
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from mdmappliance.app.service import (
    channel_policy,
    device_endpoint,
    device_tls_options,
    global_reactor,
)
from mdmappliance.config import load_config
from mdmappliance.store.engine import Store


class Bare(Resource):
    isLeaf = True

    def render_PUT(self, request: Request) -> bytes:
        request.content.read() if request.content is not None else b""
        request.setHeader(b"content-length", b"0")
        return b""


def klein_device_resource(endpoint: Resource, checkin: str, server: str) -> IResource:
    app = Klein()

    @app.route(checkin, methods=["PUT"])
    def checkin_route(request: Request) -> Any:
        return endpoint  # Klein renders a returned resource (and honours NOT_DONE_YET)

    if server != checkin:

        @app.route(server, methods=["PUT"])
        def server_route(request: Request) -> Any:
            return endpoint

    return app.resource()


def main(kind: str, config_path: str) -> None:
    reactor = global_reactor()
    config = load_config(config_path)
    if kind == "bare":
        resource: IResource = Bare()
    else:
        store = Store(config.store.path, reactor=reactor, synchronous=config.store.synchronous)
        store.startService()
        reactor.addSystemEventTrigger("before", "shutdown", store.stopService)
        endpoint = device_endpoint(config, reactor, store, channel_policy(config, reactor))
        resource = endpoint
        if kind == "klein":
            resource = klein_device_resource(
                endpoint, config.device.checkin_path, config.device.server_path
            )
    endpoint_ = SSL4ServerEndpoint(
        reactor, config.device.port, device_tls_options(config), interface="127.0.0.1"
    )
    endpoint_.listen(Site(resource))
    print("listening", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
