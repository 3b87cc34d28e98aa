"""The OpenAPI 3 description of the admin API, served at ``/openapi.json``.

Kept beside the routes it describes and checked against the running server by schemathesis
(tests/test_openapi.py): every status a route can answer is listed, with its body's shape.
"""

from __future__ import annotations

from typing import Any

from mdmappliance._version import __version__
from mdmappliance.admin.queries import COMMAND_STATES, DEVICE_STATES, MAX_PAGE
from mdmappliance.mdm.platforms import PLATFORMS


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "nullable": True, **extra}


ERRORS = _json(_ref("Errors"), "The request is wrong; one message per problem.")
ERROR = _json(_ref("Error"), "What went wrong.")
COMMON = {
    "401": _json(_ref("Error"), "No API key, or an unknown one."),
    "403": _json(_ref("Error"), "A read-only API key tried to write."),
    "404": ERROR,
    "405": ERROR,
    "413": {"description": "The body is larger than the admin API accepts (1 MiB)."},
}

CURSOR = {
    "name": "cursor",
    "in": "query",
    "description": "The next_cursor of the previous page.",
    "schema": {"type": "integer", "minimum": 0},
}
LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100},
}


def _path_param(name: str, kind: str = "string") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if kind == "string":
        schema["pattern"] = "^[A-Za-z0-9._-]{1,128}$"
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {**responses, **COMMON}, **extra}


def _page(items: str, schema: str) -> dict[str, Any]:
    """A page of a listing: the items, and the cursor of the next page (null: the last)."""
    return _json(
        {
            "type": "object",
            "required": [items, "next_cursor"],
            "properties": {
                items: {"type": "array", "items": _ref(schema)},
                "next_cursor": _nullable("integer"),
            },
        },
        f"A page of {items}.",
    )


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Errors": {
        "type": "object",
        "required": ["errors"],
        "properties": {"errors": {"type": "array", "items": {"type": "string"}}},
    },
    "Health": {
        "type": "object",
        "required": ["status", "version", "uptime_seconds", "database", "apns"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable", "degraded"]},
            "version": {"type": "string"},
            "uptime_seconds": {"type": "number"},
            "database": {"type": "object"},
            "apns": {"type": "object"},
        },
    },
    "Device": {
        "type": "object",
        "required": ["enrollment_id", "udid", "state"],
        "properties": {
            "enrollment_id": {"type": "integer"},
            "udid": {"type": "string"},
            "serial_number": _nullable("string"),
            "device_name": _nullable("string"),
            "model": _nullable("string"),
            "product_name": _nullable("string"),
            "platform": _nullable("string", enum=[*PLATFORMS, None]),
            "os_version": _nullable("string"),
            "build_version": _nullable("string"),
            "supervised": _nullable("boolean"),
            "state": {"type": "string", "enum": list(DEVICE_STATES)},
            "enrolled_at": _nullable("string"),
            "last_seen": _nullable("string"),
            "inactive_since": _nullable("string"),
            "push_status": _nullable("string"),
            "push_token_valid": _nullable("boolean"),
        },
    },
    "DeviceDetail": {
        "allOf": [
            _ref("Device"),
            {
                "type": "object",
                "properties": {
                    "facts": {"type": "object"},
                    "facts_reported_at": _nullable("string"),
                    "access_rights": _nullable("integer"),
                    "unlock_token_escrowed": {"type": "boolean"},
                    "user_enrollment": {
                        "type": "boolean",
                        "description": "Known by an EnrollmentID (User Enrollment), not a UDID",
                    },
                    "bootstrap_token_escrowed": {"type": "boolean"},
                    "identity": _nullable("object"),
                    "inventory": {"type": "object"},
                    "user_channels": {"type": "array", "items": {"type": "object"}},
                },
            },
        ]
    },
    "CommandSummary": {
        "type": "object",
        "required": ["uuid", "request_type", "state"],
        "properties": {
            "id": {"type": "integer"},
            "uuid": {"type": "string"},
            "request_type": {"type": "string"},
            "state": {"type": "string", "enum": list(COMMAND_STATES)},
            "created_at": {"type": "string"},
            "sent_at": _nullable("string"),
            "result_at": _nullable("string"),
            "not_now_count": {"type": "integer"},
            "user_id": {"type": "string"},
        },
    },
    "Command": {
        "allOf": [
            _ref("CommandSummary"),
            {
                "type": "object",
                "properties": {
                    "udid": {"type": "string"},
                    "result": {
                        "type": "object",
                        "description": "The last answer: status, ErrorChain in plain words "
                        "(errors), the catalog's summary, and the whole answer as JSON.",
                        "properties": {
                            "status": {"type": "string"},
                            "received_at": {"type": "string"},
                            "errors": {"type": "array", "items": {"type": "string"}},
                            "answer": _nullable("object"),
                        },
                    },
                },
            },
        ]
    },
    "SendCommand": {
        "type": "object",
        "required": ["command"],
        "properties": {
            "udids": {"type": "array", "items": {"type": "string"}},
            "all": {"type": "boolean"},
            "command": {
                "type": "object",
                "required": ["RequestType"],
                "properties": {"RequestType": {"type": "string"}},
                "description": "The command's keys as the spec names them; data as base64.",
            },
            "push": {"type": "boolean", "default": True},
            "partial": {"type": "boolean", "default": False},
            "sign_profile": {"type": "boolean", "default": False},
            "confirm_clear_passcode": {"type": "boolean", "default": False},
            "unchecked": {"type": "boolean", "default": False},
        },
        "additionalProperties": False,
    },
    "Sent": {
        "type": "object",
        "required": ["commands", "refused", "unknown_udids", "warnings"],
        "properties": {
            "commands": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "udid": _nullable("string"),
                        "command_uuid": {"type": "string"},
                    },
                },
            },
            "refused": {"type": "array", "items": {"type": "object"}},
            "unknown_udids": {"type": "array", "items": {"type": "string"}},
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Event": {
        "type": "object",
        "required": ["id", "at", "kind", "actor", "detail"],
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "string"},
            "kind": {"type": "string"},
            "actor": {"type": "string"},
            "subject": _nullable("string"),
            "detail": {"type": "object"},
        },
    },
}


OPERATION_IDS = {
    ("get", "/v1/health"): "health",
    ("get", "/metrics"): "metrics",
    ("get", "/openapi.json"): "openapi",
    ("get", "/v1/devices"): "listDevices",
    ("get", "/v1/devices/{udid}"): "getDevice",
    ("get", "/v1/devices/{udid}/commands"): "listDeviceCommands",
    ("post", "/v1/devices/{udid}/revoke"): "revokeDevice",
    ("post", "/v1/devices/{udid}/retire"): "retireDevice",
    ("post", "/v1/commands"): "sendCommand",
    ("get", "/v1/commands/{command_uuid}"): "getCommand",
    ("delete", "/v1/commands/{command_uuid}"): "cancelCommand",
    ("post", "/v1/push"): "push",
    ("get", "/v1/events"): "listEvents",
    ("post", "/v1/enrollment-tokens"): "createEnrollmentToken",
    ("get", "/v1/enrollment-tokens"): "listEnrollmentTokens",
    ("delete", "/v1/enrollment-tokens/{link_id}"): "revokeEnrollmentToken",
    ("post", "/v1/dep/sync"): "depSync",
    ("get", "/v1/dep/devices"): "listDEPDevices",
    ("get", "/v1/dep/devices/{serial}"): "getDEPDevice",
    ("get", "/v1/dep/account"): "depAccount",
    ("get", "/v1/dep/profiles"): "listDEPProfiles",
    ("post", "/v1/dep/profiles"): "defineDEPProfile",
    ("put", "/v1/dep/profiles/{profile_uuid}/devices"): "assignDEPProfile",
    ("get", "/v1/dep/profiles/{profile_uuid}"): "fetchDEPProfile",
    ("post", "/v1/dep/remove-profile"): "removeDEPProfile",
    ("post", "/v1/dep/disown"): "disownDEPDevices",
    ("post", "/v1/vpp/sync"): "vppSync",
    ("post", "/v1/vpp/install"): "vppInstall",
    ("get", "/v1/vpp/users"): "listVPPUsers",
    ("post", "/v1/vpp/users"): "registerVPPUser",
    ("get", "/v1/vpp/licenses"): "listVPPLicenses",
    ("post", "/v1/vpp/users/{user_id}/retire"): "retireVPPUser",
    ("post", "/v1/vpp/users/{user_id}/edit"): "editVPPUser",
    ("post", "/v1/vpp/licenses/{license_id}/associate"): "associateVPPLicense",
    ("post", "/v1/vpp/licenses/{license_id}/disassociate"): "disassociateVPPLicense",
}


def _link(
    paths: dict[str, Any],
    path: str,
    method: str,
    status: str,
    links: dict[str, tuple[str, dict[str, str]]],
) -> None:
    """OpenAPI links: where an answer's ids lead (fuzzers follow them to real resources)."""
    paths[path][method]["responses"][status]["links"] = {
        name: {"operationId": operation, "parameters": parameters}
        for name, (operation, parameters) in links.items()
    }


APPLE = {
    "502": _json(_ref("Error"), "Apple's DEP service refused; its error in words."),
    "409": _json(_ref("Error"), "No DEP server token is imported."),
    "503": _json(_ref("Error"), "Apple is busy (Retry-After)."),
}
SERIALS = {
    "type": "array",
    "items": {"type": "string", "pattern": "^[A-Za-z0-9]{1,64}$"},
    "minItems": 1,
    "maxItems": 1000,
}


def _dep_paths() -> dict[str, Any]:
    return {
        "/v1/dep/sync": {
            "post": _op(
                "Run the DEP device sync now",
                {
                    "200": _json({"type": "object"}, "What the run did."),
                    **APPLE,
                },
            )
        },
        "/v1/dep/devices": {
            "get": _op(
                "DEP devices assigned to this server, by serial, a page at a time",
                {
                    "200": _json(
                        {"type": "object"}, "A page; next is the serial to pass as after."
                    ),
                    "400": ERRORS,
                },
                parameters=[
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                    {**LIMIT, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                ],
            )
        },
        "/v1/dep/devices/{serial}": {
            "get": _op(
                "One DEP device (with live=true, also Apple's Device Details)",
                {"200": _json({"type": "object"}, "The device."), **APPLE},
                parameters=[
                    _path_param("serial"),
                    {
                        "name": "live",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    },
                ],
            )
        },
        "/v1/dep/profiles/{profile_uuid}": {
            "get": _op(
                "Fetch a DEP profile from Apple",
                {"200": _json({"type": "object"}, "As Apple holds it."), **APPLE},
                parameters=[_path_param("profile_uuid")],
            )
        },
        "/v1/dep/remove-profile": {
            "post": _op(
                "Remove the DEP profile from devices",
                {"200": _json({"type": "object"}, "Per serial."), "400": ERRORS, **APPLE},
                requestBody=_body(
                    {
                        "type": "object",
                        "required": ["devices"],
                        "properties": {"devices": SERIALS},
                        "additionalProperties": False,
                    }
                ),
            )
        },
        "/v1/dep/account": {
            "get": _op(
                "Apple's Account Details for this server",
                {"200": _json({"type": "object"}, "As Apple sent it."), **APPLE},
            )
        },
        "/v1/dep/profiles": {
            "get": _op("DEP profiles defined here", {"200": _json({"type": "object"}, "Them.")}),
            "post": _op(
                "Define a DEP profile (url and anchor_certs filled in when absent)",
                {"201": _json({"type": "object"}, "Apple's answer."), "400": ERRORS, **APPLE},
                requestBody=_body(
                    {
                        "type": "object",
                        "required": ["profile"],
                        "properties": {
                            "profile": {"type": "object"},
                            "default": {"type": "boolean"},
                        },
                        "additionalProperties": False,
                    }
                ),
            ),
        },
        "/v1/dep/profiles/{profile_uuid}/devices": {
            "put": _op(
                "Assign a DEP profile to devices",
                {"200": _json({"type": "object"}, "Per serial."), "400": ERRORS, **APPLE},
                parameters=[_path_param("profile_uuid")],
                requestBody=_body(
                    {
                        "type": "object",
                        "required": ["devices"],
                        "properties": {"devices": SERIALS},
                        "additionalProperties": False,
                    }
                ),
            )
        },
        "/v1/dep/disown": {
            "post": _op(
                'Disown devices for good (confirm must be "disown")',
                {"200": _json({"type": "object"}, "Per serial."), "400": ERRORS, **APPLE},
                requestBody=_body(
                    {
                        "type": "object",
                        "required": ["devices", "confirm"],
                        "properties": {
                            "devices": SERIALS,
                            "confirm": {"type": "string", "enum": ["disown"]},
                        },
                        "additionalProperties": False,
                    }
                ),
            )
        },
    }


VPP_APPLE = {
    "409": _json(_ref("Error"), "No sToken is imported, or Apple refused for a stated reason."),
    "502": _json(_ref("Error"), "Apple's VPP service refused; its error in words."),
    "503": _json(_ref("Error"), "Apple is busy or unreachable (Retry-After)."),
}
PAGE_BY_ID = [
    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
    {**LIMIT, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
]


def _vpp_paths() -> dict[str, Any]:
    def action(summary: str, param: str, body: dict[str, Any] | None) -> dict[str, Any]:
        extra: dict[str, Any] = {"parameters": [_path_param(param, "integer")]}
        if body is not None:
            extra["requestBody"] = _body(body)
        return {
            "post": _op(
                summary,
                {"200": _json({"type": "object"}, "Apple's answer."), "400": ERRORS, **VPP_APPLE},
                **extra,
            )
        }

    associate = {
        "type": "object",
        "properties": {
            "user_id": {"type": "integer", "minimum": 1},
            "client_user_id": {"type": "string"},
        },
        "additionalProperties": False,
    }
    return {
        "/v1/vpp/sync": {
            "post": _op(
                "Run the VPP sync now",
                {"200": _json({"type": "object"}, "What the run did."), **VPP_APPLE},
            )
        },
        "/v1/vpp/users": {
            "get": _op(
                "VPP users, a page at a time",
                {"200": _json({"type": "object"}, "A page."), "400": ERRORS},
                parameters=PAGE_BY_ID,
            ),
            "post": _op(
                "Register the VPP user of an enrolled device (and invite it)",
                {"201": _json({"type": "object"}, "The user."), "400": ERRORS, **VPP_APPLE},
                requestBody=_body(
                    {
                        "type": "object",
                        "required": ["udid"],
                        "properties": {
                            "udid": {"type": "string"},
                            "email": {"type": "string"},
                            "invite": {"type": "boolean", "default": True},
                        },
                        "additionalProperties": False,
                    }
                ),
            ),
        },
        "/v1/vpp/licenses": {
            "get": _op(
                "VPP licenses, a page at a time",
                {"200": _json({"type": "object"}, "A page."), "400": ERRORS},
                parameters=[
                    *PAGE_BY_ID,
                    {"name": "user_id", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                ],
            )
        },
        "/v1/vpp/install": {
            "post": _op(
                "Assign a VPP license to a device's user, then InstallApplication "
                "(Options.PurchaseMethod 1)",
                {
                    "201": _json({"type": "object"}, "The license and command."),
                    "400": ERRORS,
                    **VPP_APPLE,
                },
                requestBody=_body(
                    {
                        "type": "object",
                        "required": ["udid", "adam_id"],
                        "properties": {
                            "udid": {"type": "string"},
                            "adam_id": {"type": "integer", "minimum": 1},
                            "pricing_param": {"type": "string", "enum": ["STDQ", "PLUS"]},
                        },
                        "additionalProperties": False,
                    }
                ),
            )
        },
        "/v1/vpp/users/{user_id}/retire": action("Retire a VPP user", "user_id", None),
        "/v1/vpp/users/{user_id}/edit": action(
            "Change a VPP user's email",
            "user_id",
            {
                "type": "object",
                "required": ["email"],
                "properties": {"email": {"type": "string"}},
                "additionalProperties": False,
            },
        ),
        "/v1/vpp/licenses/{license_id}/associate": action(
            "Assign a license to a VPP user", "license_id", associate
        ),
        "/v1/vpp/licenses/{license_id}/disassociate": action(
            "Take a license back (not an irrevocable one)", "license_id", None
        ),
    }


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/health": {
            "get": _op(
                "Health: database, APNs",
                {
                    "200": _json(_ref("Health"), "Healthy."),
                    "503": _json(_ref("Health"), "The database or APNs is in trouble."),
                },
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                {"200": {"description": "Text format 0.0.4.", "content": {"text/plain": {}}}},
            )
        },
        "/openapi.json": {
            "get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI 3.")})
        },
        "/v1/devices": {
            "get": _op(
                "Devices (device channels), a page at a time",
                {
                    "200": _page("devices", "Device"),
                    "400": ERRORS,
                },
                parameters=[
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(DEVICE_STATES)},
                    },
                    {
                        "name": "platform",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(PLATFORMS)},
                    },
                    {"name": "serial", "in": "query", "schema": {"type": "string"}},
                    CURSOR,
                    LIMIT,
                ],
            )
        },
        "/v1/devices/{udid}": {
            "get": _op(
                "One device: enrollment, identity, facts, inventory, user channels",
                {"200": _json(_ref("DeviceDetail"), "The device.")},
                parameters=[_path_param("udid")],
            )
        },
        "/v1/devices/{udid}/commands": {
            "get": _op(
                "A device's commands, oldest first",
                {
                    "200": _page("commands", "CommandSummary"),
                    "400": ERRORS,
                },
                parameters=[
                    _path_param("udid"),
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(COMMAND_STATES)},
                    },
                    CURSOR,
                    LIMIT,
                ],
            )
        },
        "/v1/devices/{udid}/revoke": {
            "post": _op(
                "Revoke the device's identities (403 from then on)",
                {"200": _json({"type": "object"}, "Revoked.")},
                parameters=[_path_param("udid")],
            )
        },
        "/v1/devices/{udid}/retire": {
            "post": _op(
                "Remove the MDM profile, then answer 401",
                {"200": _json({"type": "object"}, "Retiring or retired."), "400": ERRORS},
                parameters=[_path_param("udid")],
                requestBody=_body(
                    {
                        "type": "object",
                        "properties": {"now": {"type": "boolean"}},
                        "additionalProperties": False,
                    },
                    required=False,
                ),
            )
        },
        "/v1/commands": {
            "post": _op(
                "Queue one command for devices (checked by the command catalog)",
                {"201": _json(_ref("Sent"), "Queued: one CommandUUID per device."), "400": ERRORS},
                requestBody=_body(_ref("SendCommand")),
            )
        },
        "/v1/commands/{command_uuid}": {
            "get": _op(
                "A command: state, times, NotNow count, result",
                {"200": _json(_ref("Command"), "The command.")},
                parameters=[_path_param("command_uuid")],
            ),
            "delete": _op(
                "Cancel a command that has no result yet",
                {"200": _json({"type": "object"}, "Canceled."), "409": ERROR},
                parameters=[_path_param("command_uuid")],
            ),
        },
        "/v1/push": {
            "post": _op(
                "Push devices so that they poll now",
                {
                    "202": _json({"type": "object"}, "Pushes requested."),
                    "400": ERRORS,
                    "409": ERROR,
                },
                requestBody=_body(
                    {
                        "type": "object",
                        "properties": {
                            "udids": {"type": "array", "items": {"type": "string"}},
                            "all": {"type": "boolean"},
                        },
                        "additionalProperties": False,
                    }
                ),
            )
        },
        "/v1/events": {
            "get": _op(
                "The event (audit) log after a cursor",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["events", "next_cursor"],
                            "properties": {
                                "events": {"type": "array", "items": _ref("Event")},
                                "next_cursor": {"type": "integer"},
                            },
                        },
                        "Events in order.",
                    ),
                    "400": ERRORS,
                },
                parameters=[
                    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    LIMIT,
                ],
            )
        },
        "/v1/enrollment-tokens": {
            "post": _op(
                "Make a one-time enrollment link",
                {"201": _json({"type": "object"}, "The link."), "400": ERRORS},
                requestBody=_body(
                    {
                        "type": "object",
                        "properties": {
                            "expires": {"type": "string", "example": "7d"},
                            "note": {"type": "string", "maxLength": 500},
                        },
                        "additionalProperties": False,
                    },
                    required=False,
                ),
            ),
            "get": _op("Enrollment links", {"200": _json({"type": "object"}, "The links.")}),
        },
        "/v1/enrollment-tokens/{link_id}": {
            "delete": _op(
                "Revoke an unused link",
                {"200": _json({"type": "object"}, "Revoked.")},
                parameters=[_path_param("link_id", "integer")],
            )
        },
    }
    paths.update(_dep_paths())
    paths.update(_vpp_paths())
    for path, operations in paths.items():
        for method, operation in operations.items():
            operation["operationId"] = OPERATION_IDS[(method, path)]
    _link(
        paths,
        "/v1/devices",
        "get",
        "200",
        {
            "device": ("getDevice", {"udid": "$response.body#/devices/0/udid"}),
            "deviceCommands": ("listDeviceCommands", {"udid": "$response.body#/devices/0/udid"}),
        },
    )
    _link(
        paths,
        "/v1/commands",
        "post",
        "201",
        {
            "command": ("getCommand", {"command_uuid": "$response.body#/commands/0/command_uuid"}),
            "cancel": (
                "cancelCommand",
                {"command_uuid": "$response.body#/commands/0/command_uuid"},
            ),
        },
    )
    _link(
        paths,
        "/v1/devices/{udid}/commands",
        "get",
        "200",
        {
            "command": ("getCommand", {"command_uuid": "$response.body#/commands/0/uuid"}),
        },
    )
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "mdmappliance admin API",
            "version": __version__,
            "description": "Local JSON API of the appliance. Every request needs "
            "'Authorization: Bearer <key>'; read-only keys get 403 on writes.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
        "paths": paths,
    }
