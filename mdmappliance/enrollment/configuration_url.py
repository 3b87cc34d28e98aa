"""DEP enrollment: the ConfigurationURL (``[dep] enroll_path`` on the enrollment listener).

During Setup Assistant a DEP device POSTs its CMS-signed MachineInfo (or sends it base64 in
``x-apple-aspen-deviceinfo``). The signature must chain to Apple Root CA
(``dep.machineinfo``), and the SERIAL must be in the DEP table, assigned to this server, with
one of this server's profiles: anyone can sign a MachineInfo for any serial with a genuine
device ("MDM Me Maybe"), so nothing else gets a profile (403, nothing issued). The answer is a
signed enrollment profile whose one-time SCEP challenge is bound to that serial and UDID; the
identity it gets is recorded for that UDID, which the device must then Authenticate as.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from cryptography import x509
from klein import Klein
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from mdmappliance.dep.machineinfo import (
    MachineInfo,
    MachineInfoRefused,
    machine_info_from_header,
    read_machine_info,
)
from mdmappliance.device.digest import DigestAuthority
from mdmappliance.enrollment.factory import MadeProfile, ProfileFactory
from mdmappliance.enrollment.links import record_issued
from mdmappliance.mdm.schema import parse_version
from mdmappliance.scep.challenges import record_challenge
from mdmappliance.store import Store, Tx
from mdmappliance.store.errors import StoreUnavailable

log = Logger()
PROFILE_TYPE = b"application/x-apple-aspen-config"
MAX_BODY = 64 * 1024


class NotAssigned(ValueError):
    """The serial is not a DEP device of this server with this server's profile."""


def check_assigned(tx: Tx, serial: str) -> None:
    device = tx.dep.get(serial)
    if device is None or device.state != "assigned":
        raise NotAssigned(f"serial {serial} is not a DEP device assigned to this server")
    ours = {p["profile_uuid"] for p in tx.dep.profiles()}
    if device.profile_uuid not in ours:
        raise NotAssigned(f"serial {serial} does not have one of this server's DEP profiles")


def hand_out(
    tx: Tx,
    machine: MachineInfo,
    made: MadeProfile,
    peer: str,
    access_rights: int | None,
    challenge_expires: datetime.datetime | None,
) -> None:
    """Record what the profile carries against the serial and UDID, once more checking
    the serial (one transaction: a profile is handed out only for an assigned serial)."""
    check_assigned(tx, machine.serial)
    if made.scep is not None:
        assert challenge_expires is not None
        record_challenge(
            tx,
            made.scep.challenge,
            made.scep.subject,
            challenge_expires,
            udid=machine.udid,
            access_rights=access_rights,
        )
    else:
        assert made.identity is not None
        record_issued(tx, made.identity.certificate, udid=machine.udid, access_rights=access_rights)
    tx.events.record(
        "dep.enrollment_profile",
        actor=f"peer:{peer}",
        subject=machine.udid,
        detail={
            "serial": machine.serial,
            "product": machine.product,
            "os_version": machine.os_version,
            "identity": "scep" if made.scep is not None else "pkcs12",
        },
    )


class ConfigurationURL:
    def __init__(
        self,
        *,
        store: Store,
        factory: ProfileFactory,
        minimum_os: str = "",
        chain: tuple[x509.Certificate, ...] | None = None,
        login: DigestAuthority | None = None,
    ) -> None:
        self.store = store
        #: ``[dep] require_login``: HTTP Digest against the local users file.
        self.login = login
        self.factory = factory
        self.minimum_os = minimum_os
        #: The Apple device CA chain (None: the shipped one); tests give their own.
        self.chain = chain

    def install(self, app: Klein, path: str) -> None:
        @app.route(path, methods=["GET", "POST"])
        async def configuration_url(request: IRequest) -> bytes:
            return await self._handle(request)

    async def _handle(self, request: IRequest) -> bytes:
        peer = getattr(request.getClientAddress(), "host", "?")
        try:
            der = self._machine_info_der(request)
            machine = await deferToThread(read_machine_info, der, self.chain)
        except MachineInfoRefused as e:
            log.info("DEP MachineInfo from {peer} refused: {reason}", peer=peer, reason=str(e))
            return _text(request, 403, "This device's MachineInfo was not accepted.")
        if self._too_old(machine):
            return _software_update(request, self.minimum_os)
        if self.login is not None:
            answer = request.getHeader(b"authorization")
            user = (
                self.login.verify(machine.udid, "dep-enroll", answer.decode("latin-1"))
                if answer is not None
                else None
            )
            if user is None:
                request.setHeader(
                    b"www-authenticate", self.login.challenge(machine.udid, "dep-enroll").encode()
                )
                return _text(request, 401, "Sign in to enroll this device.")
            log.info(
                "DEP enrollment of {serial} signed in as {user}", serial=machine.serial, user=user
            )
        try:
            self.factory.settings().check()
        except ValueError as e:
            log.error("DEP enrollment profile cannot be served: {problem}", problem=str(e))
            return _text(request, 503, "Enrollment is not available yet.")
        try:
            await self.store.run(check_assigned, machine.serial)
            made = await deferToThread(self.factory.make, f"mdmappliance device {machine.udid}")
            await self.store.transaction(
                hand_out,
                machine,
                made,
                peer,
                self.factory.settings().access_rights,
                self._challenge_expires(),
            )
        except NotAssigned as e:
            log.warn("DEP enrollment refused for {peer}: {reason}", peer=peer, reason=str(e))
            return _text(request, 403, "This device is not assigned to this MDM server.")
        except StoreUnavailable:
            request.setHeader(b"retry-after", b"30")
            return _text(request, 503, "Enrollment is not available right now.")
        log.info(
            "DEP enrollment profile for {serial} ({udid}) to {peer}",
            serial=machine.serial,
            udid=machine.udid,
            peer=peer,
        )
        request.setResponseCode(200)
        request.setHeader(b"content-type", PROFILE_TYPE)
        return made.signed

    def _too_old(self, machine: MachineInfo) -> bool:
        if not self.minimum_os or machine.os_version is None:
            return False
        return (parse_version(machine.os_version) or ()) < (parse_version(self.minimum_os) or ())

    @staticmethod
    def _machine_info_der(request: IRequest) -> bytes:
        header = request.getHeader(b"x-apple-aspen-deviceinfo")
        if header is not None:
            return machine_info_from_header(header)
        body: bytes = request.content.read(MAX_BODY + 1)
        if not body:
            raise MachineInfoRefused("no MachineInfo in the body or x-apple-aspen-deviceinfo")
        return body

    def _challenge_expires(self) -> datetime.datetime | None:
        if self.factory.scep is None:
            return None
        return datetime.datetime.now(datetime.UTC) + self.factory.scep.challenge_lifetime


def _software_update(request: IRequest, minimum: str) -> bytes:
    """Apple's documented answer for a device below the minimum OS: it updates, then retries."""
    body: dict[str, Any] = {
        "code": "com.apple.softwareupdate.required",
        "details": {"OSVersion": minimum},
    }
    request.setResponseCode(403)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body).encode()


def _text(request: IRequest, status: int, message: str) -> bytes:
    body = (message + "\n").encode()
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return body
