"""systemd's readiness protocol (``sd_notify``), so a ``Type=notify`` unit knows when the
appliance serves, when it stops, and what it is doing (``systemctl status`` shows STATUS).

The protocol is one datagram per message to the unix socket ``$NOTIFY_SOCKET`` names: a
path, or an abstract socket when it starts with ``@``. The stdlib is enough; no dependency.
Without ``NOTIFY_SOCKET`` (not run by systemd) every call does nothing. Telling systemd is
never worth stopping the appliance for: a failure is logged once and otherwise ignored.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from twisted.logger import Logger

log = Logger()

#: How long one message may block the reactor when systemd does not read its socket.
SEND_TIMEOUT = 1.0


def socket_address(value: str) -> str | None:
    """The address ``NOTIFY_SOCKET`` names, or None when it is not a unix socket we can use
    (systemd also knows ``vsock:`` addresses, for virtual machines; we do not)."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


class Notifier:
    """Sends readiness messages to systemd's notify socket, if there is one."""

    def __init__(self, notify_socket: str | None) -> None:
        self.notify_socket = notify_socket or None
        self.address = socket_address(notify_socket) if notify_socket else None
        self._complained = False
        if self.notify_socket and self.address is None:
            self._complain(f"unsupported address {self.notify_socket!r}")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def status(self, text: str) -> None:
        """What the appliance is doing, in one line."""
        self.send(f"STATUS={' '.join(text.split())}")

    def ready(self) -> None:
        self.send("READY=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def send(self, *assignments: str) -> None:
        """One datagram of ``KEY=value`` lines."""
        if self.address is None:
            return
        data = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendto(data, self.address)
        except OSError as e:
            self._complain(str(e))

    def _complain(self, problem: str) -> None:
        if self._complained:
            return
        self._complained = True
        log.warn(
            "cannot notify systemd at NOTIFY_SOCKET={socket}: {problem} "
            "(further failures are not logged)",
            socket=self.notify_socket,
            problem=problem,
        )
