"""Property-based fuzzing (hypothesis) of what the outside world sends (issue 12, item 7):
the device message parser and handlers, and the admin API's input parsing. The properties:
a refusal is a named 4xx error, never another exception (a 5xx); and a refused device
message changes nothing in the database."""

from __future__ import annotations

import datetime
import hashlib
import plistlib
from pathlib import Path
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest

from mdmappliance.admin.http import BadQuery, int_arg, json_body
from mdmappliance.admin.routes.commands import _read_send
from mdmappliance.commands.catalog import CATALOG, SCHEMAS, prepare
from mdmappliance.commands.errors import CommandInvalid
from mdmappliance.commands.information import REPLY_TYPES
from mdmappliance.commands.queue import enqueue
from mdmappliance.device.handlers import handle_message
from mdmappliance.device.policy import ChannelPolicy
from mdmappliance.enrollment.links import parse_duration
from mdmappliance.mdm.errors import MDMError
from mdmappliance.mdm.messages import parse_message, parse_plist
from mdmappliance.pki.escrow import Escrow, new_key
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.simulator.device import TOPIC, issue_device_identity
from mdmappliance.store import Store, Tx
from tests.support import make_installation

EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Values a plist can hold (and some JSON cannot: NaN, infinity, dates, data).
leaves = (
    st.text(max_size=40)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from((float("nan"), float("inf"), float("-inf")))
    | st.booleans()
    | st.binary(max_size=40)
    | st.datetimes(min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2100, 1, 1))
)
plist_values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4)
    ),
    max_leaves=12,
)
KEYS = (
    "MessageType",
    "UDID",
    "Topic",
    "Status",
    "CommandUUID",
    "UserID",
    "Token",
    "PushMagic",
    "UnlockToken",
    "ErrorChain",
    "QueryResponses",
    "ProfileList",
    "DigestResponse",
    "AuthToken",
)
MESSAGE_TYPES = ("Authenticate", "TokenUpdate", "CheckOut", "UserAuthenticate", "Other")
STATUSES = ("Idle", "Acknowledged", "Error", "CommandFormatError", "NotNow", "Other")


def messages(udid: str, queued: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Device messages near the real ones: the right keys, often right values (the UUIDs of
    commands queued for the device among them), any types."""
    near = {
        "MessageType": st.sampled_from(MESSAGE_TYPES) | plist_values,
        "UDID": st.just(udid) | plist_values,
        "Topic": st.just(TOPIC) | plist_values,
        "Status": st.sampled_from(STATUSES) | plist_values,
        "CommandUUID": st.sampled_from(queued) | st.uuids().map(str) | plist_values,
    }
    return st.fixed_dictionaries(
        {},
        optional={key: near.get(key, plist_values) for key in KEYS},
    )


#: The answer key of each request type whose answer the catalog reads.
ANSWER_KEYS = {
    "DeviceInformation": "QueryResponses",
    "SecurityInfo": "SecurityInfo",
    "ProfileList": "ProfileList",
    "ProvisioningProfileList": "ProvisioningProfileList",
    "CertificateList": "CertificateList",
    "InstalledApplicationList": "InstalledApplicationList",
    "ManagedApplicationList": "ManagedApplicationList",
    "Restrictions": "GlobalRestrictions",
    "Settings": "Settings",
    "ManagedApplicationConfiguration": "ApplicationConfigurations",
    "ManagedApplicationAttributes": "ApplicationAttributes",
    "ManagedApplicationFeedback": "ManagedApplicationFeedback",
    "RequestMirroring": "MirroringResult",
    "InviteToProgram": "InvitationResult",
}
#: Answer dictionaries keyed by what the catalog reads: known query names, or any text.
answer_dicts = st.dictionaries(
    st.sampled_from(sorted(REPLY_TYPES)) | st.text(max_size=20), plist_values, max_size=6
)


def answers(udid: str, queued: dict[str, list[str]]) -> st.SearchStrategy[dict[str, Any]]:
    """Results for queued commands: the answer key of the command's own request type,
    holding any shape and any values."""

    def of(request_type: str) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {
                "UDID": st.just(udid),
                "Status": st.sampled_from(("Acknowledged", "Acknowledged", "Error", "NotNow")),
                "CommandUUID": st.sampled_from(queued[request_type]),
                ANSWER_KEYS.get(request_type, "Answer"): answer_dicts
                | st.lists(answer_dicts, max_size=3)
                | plist_values,
            },
            optional={"ErrorChain": st.lists(answer_dicts, max_size=2)},
        )

    return st.sampled_from(sorted(queued)).flatmap(of)


class DeviceMessages(SynchronousTestCase):
    """Parse, then handle in one transaction on a real store, as the device routes do."""

    def setUp(self) -> None:
        from mdmappliance.config import load_config

        config = load_config(make_installation(Path(self.mktemp())))
        self.udid = "PROPERTY-DEVICE-0001"
        issued = issue_device_identity(config.pki.ca_cert, config.pki.ca_key, self.udid)
        self.identity = DeviceIdentity.of(issued.certificate, "tls")
        self.policy = ChannelPolicy(escrow=Escrow(new_key()), topic=TOPIC)
        self.store = Store(config.store.path, synchronous="OFF")
        self.store.open()
        self.addCleanup(self.store.close)
        for message in (
            {"MessageType": "Authenticate", "UDID": self.udid, "Topic": TOPIC},
            {
                "MessageType": "TokenUpdate",
                "UDID": self.udid,
                "Topic": TOPIC,
                "Token": b"t" * 32,
                "PushMagic": "magic",
            },
        ):
            self.handle(plistlib.dumps(message), checkin_only=True)
        self.queued = self.store.transaction_now(self.enqueue_every_request_type)

    def enqueue_every_request_type(self, tx: Tx) -> dict[str, list[str]]:
        """Commands of every request type the catalog reads answers of, prepared as an
        admin's would be (answers are read against what was asked)."""
        enrollment = tx.enrollments.get(self.udid)
        assert enrollment is not None
        queued: dict[str, list[str]] = {}
        for name, spec in sorted(CATALOG.items()):
            if spec.parse is None:
                continue
            try:
                command = prepare({"RequestType": name}).command
            except CommandInvalid:
                command = {"RequestType": name}  # it has required keys: queued as it is
            queued[name] = [enqueue(tx, enrollment.id, command) for _ in range(40)]
        return queued

    def handle(self, body: bytes, *, checkin_only: bool) -> Any:
        message = parse_message(parse_plist(body, 32), body, checkin_only=checkin_only)
        return self.store.transaction_now(handle_message, message, self.identity, self.policy, ())

    def fingerprint(self) -> str:
        """The database's content (not its pages): equal before and after a refusal."""
        conn = self.store.transaction_now(lambda tx: tx.conn)
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()

    def check(self, body: bytes, checkin_only: bool) -> None:
        before = self.fingerprint()
        try:
            self.handle(body, checkin_only=checkin_only)
        except MDMError:
            self.assertEqual(self.fingerprint(), before, "a refusal changed the database")

    @EXAMPLES
    @given(st.data(), st.booleans())
    def test_messages_near_the_real_ones(self, data: st.DataObject, checkin: bool) -> None:
        message = data.draw(messages(self.udid, [u for us in self.queued.values() for u in us]))
        try:
            body = plistlib.dumps(message, fmt=plistlib.FMT_XML)
        except (TypeError, OverflowError, ValueError):
            return  # not a plist at all (plistlib refuses it before we ever could)
        self.check(body, checkin)

    @EXAMPLES
    @given(st.data())
    def test_answers_of_any_shape(self, data: st.DataObject) -> None:
        message = data.draw(answers(self.udid, self.queued))
        try:
            body = plistlib.dumps(message, fmt=plistlib.FMT_XML)
        except (TypeError, OverflowError, ValueError):
            return
        self.check(body, False)

    @EXAMPLES
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(KEYS) | st.text(max_size=10),
                st.sampled_from(("string", "integer", "real", "date", "data", "true", "false")),
                st.text(max_size=30),
            ),
            max_size=6,
        ),
        st.booleans(),
    )
    def test_typed_elements_holding_any_text(
        self, entries: list[tuple[str, str, str]], checkin: bool
    ) -> None:
        """Each plist element with text it may not hold (``<date>nope</date>``)."""
        from xml.sax.saxutils import escape

        inner = "".join(
            f"<key>{escape(key)}</key><{tag}>{escape(text)}</{tag}>" for key, tag, text in entries
        )
        head = '<?xml version="1.0"?><plist version="1.0"><dict>'
        self.check((head + inner + "</dict></plist>").encode(), checkin)

    @EXAMPLES
    @given(st.binary(max_size=300), st.booleans())
    def test_any_bytes(self, body: bytes, checkin: bool) -> None:
        self.check(body, checkin)

    @EXAMPLES
    @given(st.text(max_size=200), st.booleans())
    def test_xml_like_text(self, text: str, checkin: bool) -> None:
        body = (
            b'<?xml version="1.0"?><plist version="1.0"><dict>' + text.encode() + b"</dict></plist>"
        )
        self.check(body, checkin)


class AdminInputParsing(SynchronousTestCase):
    """Each admin route's parsing of bodies, query values and commands."""

    @EXAMPLES
    @given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
    def test_bodies(self, raw: bytes) -> None:
        body, errors = json_body(cast(IRequest, _Request(raw)))
        self.assertIsInstance(body, dict)
        self.assertTrue(all(isinstance(e, str) for e in errors))
        if not errors:
            _read_send(body, errors)  # the body's shape is checked without raising

    @EXAMPLES
    @given(st.text(max_size=30))
    def test_query_numbers(self, value: str) -> None:
        request = cast(
            IRequest, _Request(b"", {b"limit": [value.encode("utf-8", "surrogatepass")]})
        )
        try:
            number = int_arg(request, "limit", 100, 1, 1000)
        except BadQuery as e:
            self.assertTrue(str(e).startswith("limit:"))
        else:
            self.assertTrue(1 <= number <= 1000)

    @EXAMPLES
    @given(st.text(max_size=30))
    def test_durations(self, text: str) -> None:
        try:
            lifetime = parse_duration(text)
        except ValueError:
            return
        self.assertTrue(datetime.timedelta(minutes=1) <= lifetime <= datetime.timedelta(days=365))

    @EXAMPLES
    @given(
        st.sampled_from(sorted(CATALOG)),
        st.dictionaries(st.text(max_size=20), plist_values, max_size=5),
    )
    def test_commands(self, request_type: str, keys: dict[str, Any]) -> None:
        try:
            prepared = prepare({"RequestType": request_type, **keys})
        except CommandInvalid as e:
            self.assertTrue(e.problems and all(isinstance(p, str) for p in e.problems))
        else:
            plistlib.dumps(prepared.command, fmt=plistlib.FMT_XML)  # it can be sent

    @EXAMPLES
    @given(st.data())
    def test_commands_with_apples_key_names(self, data: st.DataObject) -> None:
        """Apple's own key names (at the top, and Settings items of every kind) holding any
        value: a list of problems or a sendable command, never an exception."""
        request_type = data.draw(st.sampled_from(sorted(SCHEMAS)))
        schema = SCHEMAS[request_type]
        names = [key.name for key in schema.keys] or ["Unknown"]
        keys = data.draw(st.dictionaries(st.sampled_from(names), plist_values, max_size=4))
        if request_type == "Settings":
            settings_key = schema.key("Settings")
            assert settings_key is not None
            kinds = {k.name: [s.name for s in k.subkeys] for k in settings_key.subkeys}
            item = st.sampled_from(sorted(kinds)).flatmap(
                lambda kind: st.fixed_dictionaries(
                    {"Item": st.just(kind) | plist_values},
                    optional={name: plist_values for name in kinds[kind] if name != "Item"},
                )
            )
            keys["Settings"] = data.draw(st.lists(item | plist_values, max_size=3))
        try:
            prepared = prepare({"RequestType": request_type, **keys})
        except CommandInvalid as e:
            self.assertTrue(e.problems and all(isinstance(p, str) for p in e.problems))
        else:
            plistlib.dumps(prepared.command, fmt=plistlib.FMT_XML)


class _Request:
    """What the parsers read of a request: its body and its query arguments."""

    def __init__(self, body: bytes, args: dict[bytes, list[bytes]] | None = None) -> None:
        import io

        self.content = io.BytesIO(body)
        self.args = args or {}
