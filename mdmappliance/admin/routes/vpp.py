"""VPP: ``/v1/vpp/...`` (sync now, users and licenses as the last sync left them, register,
invite, retire, edit, associate and disassociate licenses).

Calls that reach Apple answer 502 with Apple's error in words, 503 with Retry-After when Apple
is busy or unreachable, and 409 when no sToken is imported.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from mdmappliance.admin.context import AdminContext
from mdmappliance.admin.http import (
    actor,
    int_arg,
    json_body,
    sync_answer,
    unknown_fields,
    write_json,
)
from mdmappliance.commands.errors import CommandRejected
from mdmappliance.commands.send import resolve_udids
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store import Tx
from mdmappliance.vpp.client import AppAssignment, VPPBusy, VPPError, VPPRequestError
from mdmappliance.vpp.token import STokenError

NO_TOKEN = "VPP is not set up: no sToken (`mdmappliance vpp token import`)"
OFF = "VPP is off here ([vpp] enabled = false)"
#: Documented refusals a request can meet (the request, not Apple, is at fault): 409.
REFUSALS = (9607, 9610, 9616, 9618, 9619, 9620)
MAX_ID = 2**63 - 1
CLIENT_USER_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,256}$")


def client_user_id_for(udid: str) -> str:
    """Our own stable id for the user of a device: the spec wants one that never changes and
    is never reused (not an email address)."""
    return f"mdmappliance-device-{udid}"


def record_user(tx: Tx, user: dict[str, Any], kind: str, who: str) -> None:
    tx.vpp.upsert_user(user, utc_timestamp())
    tx.events.record(
        kind,
        actor=who,
        subject=str(user.get("userId")),
        detail={"status": user.get("status"), "client_user_id": user.get("clientUserIdStr")},
    )


def record_retired(tx: Tx, user_id: int, who: str) -> None:
    tx.vpp.set_user_status(user_id, "Retired", utc_timestamp())
    tx.events.record("vpp.user_retired", actor=who, subject=str(user_id), detail={})


def record_license(tx: Tx, answer: dict[str, Any], kind: str, who: str) -> None:
    now = utc_timestamp()
    license_ = answer.get("license")
    if isinstance(license_, dict):
        tx.vpp.upsert_license(license_, now)
        license_id = _id(license_.get("licenseId"))
        if kind == "vpp.license_disassociated" and license_id is not None:
            tx.vpp.set_license_user(license_id, None, None, now)
    user = answer.get("user")
    if isinstance(user, dict):
        tx.vpp.upsert_user(user, now)
    tx.events.record(
        kind,
        actor=who,
        subject=str(license_.get("licenseId")) if isinstance(license_, dict) else None,
        detail={"user_id": user.get("userId") if isinstance(user, dict) else None},
    )


def _id(value: Any) -> int | None:
    """An id Apple would take: a positive integer, as a number or a string of digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value <= MAX_ID else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and 0 < int(value) <= MAX_ID:
        return int(value)
    return None


class VPPRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    async def with_client(
        self, request: IRequest, work: Callable[[AppAssignment], Awaitable[bytes]]
    ) -> bytes:
        if self.ctx.vpp is None:
            return write_json(request, 409, {"error": OFF})
        try:
            client = await self.ctx.vpp.client()
        except STokenError as e:
            return write_json(request, 409, {"error": f"the VPP sToken: {e}"})
        if client is None:
            return write_json(request, 409, {"error": NO_TOKEN})
        try:
            return await work(client)
        except VPPBusy as e:
            request.setHeader(b"retry-after", str(int(e.retry_after or 60)).encode())
            return write_json(request, 503, {"error": str(e)})
        except VPPRequestError as e:
            if e.code in (9609, 9604):
                return write_json(request, 404, {"error": str(e)})
            if e.code in REFUSALS:
                return write_json(request, 409, {"error": str(e)})
            return write_json(request, 502, {"error": f"Apple's VPP service: {e}"})
        except VPPError as e:
            return write_json(request, 502, {"error": f"Apple's VPP service: {e}"})

    async def vpp_sync(self, request: IRequest) -> bytes:
        if self.ctx.vpp is None:
            return write_json(request, 409, {"error": OFF})
        try:
            token = self.ctx.vpp.token()
        except STokenError as e:
            return write_json(request, 409, {"error": f"the VPP sToken: {e}"})
        if token is None:
            return write_json(request, 409, {"error": NO_TOKEN})
        if self.ctx.vpp.job.running:
            return write_json(request, 409, {"error": "a VPP sync is running; try again soon"})
        report = await self.ctx.vpp.sync_now()
        return sync_answer(request, report)

    async def vpp_users(self, request: IRequest) -> bytes:
        after = int_arg(request, "after", 0, 0, MAX_ID)
        limit = int_arg(request, "limit", 100, 1, 1000)
        users = await self.ctx.store.run(lambda tx: tx.vpp.users(after, limit))
        body: dict[str, Any] = {"users": users}
        if len(users) == limit:
            body["next"] = users[-1]["user_id"]
        return write_json(request, 200, body)

    async def vpp_licenses(self, request: IRequest) -> bytes:
        after = int_arg(request, "after", 0, 0, MAX_ID)
        limit = int_arg(request, "limit", 100, 1, 1000)
        user = int_arg(request, "user_id", 0, 0, MAX_ID) or None
        licenses = await self.ctx.store.run(lambda tx: tx.vpp.licenses(after, limit, user))
        body: dict[str, Any] = {"licenses": licenses}
        if len(licenses) == limit:
            body["next"] = licenses[-1]["license_id"]
        return write_json(request, 200, body)

    async def vpp_register(self, request: IRequest) -> bytes:
        """Register the VPP user of an enrolled device (our stable clientUserIdStr), and with
        ``invite`` queue InviteToProgram with the invitation Apple returns."""
        body, errors = json_body(request)
        errors += unknown_fields(body, {"udid", "email", "invite"})
        udid, email, invite = body.get("udid"), body.get("email"), body.get("invite", True)
        if not isinstance(udid, str) or not udid or len(udid) > 100:
            errors.append("udid: the enrolled device whose user this is")
        if email is not None and (not isinstance(email, str) or len(email) > 320):
            errors.append("email: a string")
        if not isinstance(invite, bool):
            errors.append("invite: true or false")
        if errors:
            return write_json(request, 400, {"errors": errors})
        assert isinstance(udid, str)
        found, unknown = await self.ctx.store.run(resolve_udids, [udid])
        if unknown:
            return write_json(request, 404, {"error": f"no enrolled device {udid}"})

        async def work(client: AppAssignment) -> bytes:
            params: dict[str, Any] = {"clientUserIdStr": client_user_id_for(udid)}
            if email:
                params["email"] = email
            answer = await client.call("registerVPPUserSrv", params)
            user = answer.get("user") if isinstance(answer.get("user"), dict) else None
            if user is None:
                return write_json(request, 502, {"error": "Apple registered no user"})
            await self.ctx.store.transaction(
                record_user, user, "vpp.user_registered", actor(request)
            )
            result: dict[str, Any] = {"user": user}
            url = user.get("inviteUrl")
            if invite and user.get("status") == "Registered" and isinstance(url, str):
                result["invite_command_uuid"] = await self._invite(
                    request, list(found.values()), url.replace("\\/", "/")
                )
            return write_json(request, 201, result)

        return await self.with_client(request, work)

    async def _invite(self, request: IRequest, enrollment_ids: list[int], url: str) -> str | None:
        if self.ctx.sender is None:
            return None
        try:
            sent = await self.ctx.sender.send(
                enrollment_ids,
                {
                    "RequestType": "InviteToProgram",
                    "ProgramID": "com.apple.cloudvpp",
                    "InvitationURL": url,
                },
                actor=actor(request),
            )
        except CommandRejected:
            return None
        return next(iter(sent.queued.values()), None)

    async def _give_back(self, client: AppAssignment, answer: dict[str, Any], who: str) -> None:
        """Nothing will install the app: the license it just got goes back."""
        license_ = answer.get("license")
        given = _id(license_.get("licenseId")) if isinstance(license_, dict) else None
        if given is None:
            return
        back = await client.call("disassociateVPPLicenseFromVPPUserSrv", {"licenseId": given})
        await self.ctx.store.transaction(record_license, back, "vpp.license_disassociated", who)

    async def vpp_install(self, request: IRequest) -> bytes:
        """InstallApplication of a VPP app for an enrolled device's user: the license first
        (associateVPPLicenseWithVPPUserSrv by adamId), then the command with Options
        PurchaseMethod 1 ("Volume Purchase Program App Assignment")."""
        body, errors = json_body(request)
        errors += unknown_fields(body, {"udid", "adam_id", "pricing_param"})
        udid, adam_id = body.get("udid"), _id(body.get("adam_id"))
        pricing = body.get("pricing_param", "STDQ")
        if not isinstance(udid, str) or not udid or len(udid) > 100:
            errors.append("udid: the enrolled device to install on")
        if adam_id is None:
            errors.append("adam_id: the app's iTunes Store ID (its adamId)")
        if pricing not in ("STDQ", "PLUS"):
            errors.append("pricing_param: STDQ (apps) or PLUS")
        if self.ctx.sender is None:
            errors.append("commands cannot be sent from here")
        if errors:
            return write_json(request, 400, {"errors": errors})
        assert isinstance(udid, str) and self.ctx.sender is not None
        found, unknown = await self.ctx.store.run(resolve_udids, [udid])
        if unknown:
            return write_json(request, 404, {"error": f"no enrolled device {udid}"})
        sender = self.ctx.sender

        async def work(client: AppAssignment) -> bytes:
            params = {
                "adamId": adam_id,
                "pricingParam": pricing,
                "clientUserIdStr": client_user_id_for(udid),
            }
            try:
                answer = await client.call("associateVPPLicenseWithVPPUserSrv", params)
            except VPPRequestError as e:
                if e.code != 9616:  # already assigned to this user: install anyway
                    return write_json(request, 409, {"error": str(e)})
                answer = {}
            if answer:
                await self.ctx.store.transaction(
                    record_license, answer, "vpp.license_associated", actor(request)
                )
            try:
                sent = await sender.send(
                    list(found.values()),
                    {"RequestType": "InstallApplication", "iTunesStoreID": adam_id,
                     "Options": {"PurchaseMethod": 1}},
                    actor=actor(request),
                )  # fmt: skip
            except CommandRejected as e:
                await self._give_back(client, answer, actor(request))
                return write_json(request, 409, {"error": f"InstallApplication: {e}"})
            return write_json(
                request,
                201,
                {
                    "license": answer.get("license"),
                    "command_uuid": next(iter(sent.queued.values()), None),
                },
            )

        return await self.with_client(request, work)

    async def user_action(self, request: IRequest, user_id: int, action: str) -> bytes:
        body, errors = json_body(request)
        if action == "retire":
            errors += unknown_fields(body, set())
        else:
            errors += unknown_fields(body, {"email"})
            if not isinstance(body.get("email"), str) or len(body["email"]) > 320:
                errors.append("email: the new address")
        if not 0 < user_id <= MAX_ID:
            errors.append("user_id: a VPP userId")
        if errors:
            return write_json(request, 400, {"errors": errors})
        service = "retireVPPUserSrv" if action == "retire" else "editVPPUserSrv"
        params: dict[str, Any] = {"userId": user_id}
        if action == "edit":
            params["email"] = body["email"]

        async def work(client: AppAssignment) -> bytes:
            answer = await client.call(service, params)
            user = answer.get("user")
            kind = "vpp.user_retired" if action == "retire" else "vpp.user_edited"
            if isinstance(user, dict):
                await self.ctx.store.transaction(record_user, user, kind, actor(request))
            elif action == "retire":  # the spec's answer is the status alone
                await self.ctx.store.transaction(record_retired, user_id, actor(request))
            return write_json(request, 200, answer)

        return await self.with_client(request, work)

    async def license_action(self, request: IRequest, license_id: int, action: str) -> bytes:
        body, errors = json_body(request)
        known = {"user_id", "client_user_id"} if action == "associate" else set()
        errors += unknown_fields(body, known)
        params: dict[str, Any] = {"licenseId": license_id}
        if not 0 < license_id <= MAX_ID:
            errors.append("license_id: a VPP licenseId")
        if action == "associate":
            user_id, client_user = _id(body.get("user_id")), body.get("client_user_id")
            if user_id is not None:
                params["userId"] = user_id
            elif isinstance(client_user, str) and CLIENT_USER_ID.match(client_user):
                params["clientUserIdStr"] = client_user
            else:
                errors.append("user_id or client_user_id: whom the license goes to")
        if errors:
            return write_json(request, 400, {"errors": errors})
        if action == "disassociate":
            known_license = await self.ctx.store.run(lambda tx: tx.vpp.license(license_id))
            if known_license is not None and known_license["is_irrevocable"]:
                return write_json(
                    request,
                    409,
                    {
                        "error": "license is irrevocable: Apple does not take back book licenses "
                        "(9607)"
                    },
                )
        service = (
            "associateVPPLicenseWithVPPUserSrv"
            if action == "associate"
            else "disassociateVPPLicenseFromVPPUserSrv"
        )

        async def work(client: AppAssignment) -> bytes:
            try:
                answer = await client.call(service, params)
            except VPPRequestError as e:
                if e.code in (*REFUSALS, 9609):
                    return write_json(request, 409, {"error": str(e)})
                raise
            kind = f"vpp.license_{action}d"
            await self.ctx.store.transaction(record_license, answer, kind, actor(request))
            return write_json(request, 200, answer)

        return await self.with_client(request, work)


def register(app: Klein, ctx: AdminContext) -> None:
    routes = VPPRoutes(ctx)
    app.route("/v1/vpp/sync", methods=["POST"])(routes.vpp_sync)
    app.route("/v1/vpp/users", methods=["GET"])(routes.vpp_users)
    app.route("/v1/vpp/users", methods=["POST"])(routes.vpp_register)
    app.route("/v1/vpp/licenses", methods=["GET"])(routes.vpp_licenses)
    app.route("/v1/vpp/install", methods=["POST"])(routes.vpp_install)

    @app.route("/v1/vpp/users/<int:user_id>/retire", methods=["POST"])
    async def vpp_retire_user(request: IRequest, user_id: int) -> bytes:
        return await routes.user_action(request, user_id, "retire")

    @app.route("/v1/vpp/users/<int:user_id>/edit", methods=["POST"])
    async def vpp_edit_user(request: IRequest, user_id: int) -> bytes:
        return await routes.user_action(request, user_id, "edit")

    @app.route("/v1/vpp/licenses/<int:license_id>/associate", methods=["POST"])
    async def vpp_associate_license(request: IRequest, license_id: int) -> bytes:
        return await routes.license_action(request, license_id, "associate")

    @app.route("/v1/vpp/licenses/<int:license_id>/disassociate", methods=["POST"])
    async def vpp_disassociate_license(request: IRequest, license_id: int) -> bytes:
        return await routes.license_action(request, license_id, "disassociate")
