"""Property-based fuzzing (hypothesis) of every admin API route (issue 12, item 7): whatever
the path, query string, body and key, the answer is never a 5xx, errors are JSON, and a
refusal (status >= 400) leaves the database exactly as it was.

How the routes are driven, without sockets, threads or a running reactor:

- The resource is the real one: ``AdminAPI(AdminContext(...)).resource(api_keys)`` (the Klein
  app behind ``BearerAuth``), wired as ``admin_listener`` and ``make_service`` wire it: the
  real ``command_sender`` (catalog, profile signer, escrow), the DEP and VPP runtimes of the
  installation (no server token or sToken imported, so calls that would reach Apple answer
  409 after the input is parsed), no push service (``/v1/push`` answers 409 after parsing).
- Requests go through treq's ``RequestTraversalAgent``: a real ``twisted.web`` Site and HTTP
  channel over an in-memory transport, so the request line, headers, query parsing, Klein's
  routing and werkzeug's converters are all the real ones.
- The store is the real ``Store`` on a real SQLite file (``synchronous=OFF``), opened for
  offline use, then given a thread pool and reactor that run the store's own work loop
  inline (``_InlinePool``, ``_InlineReactor``): every ``store.run``/``store.transaction``
  goes through the real batching, savepoints and error translation, and its Deferred has
  fired by the time ``_submit`` returns. So each request completes within one
  ``agent.flush()``, and hypothesis's ``@given`` drives plain synchronous tests.
- Before each example the database is put back to the seeded state (one enrolled device,
  queued commands, an enrollment link) with SQLite's backup API when an earlier example
  changed it (a 2xx retire, cancel or revoke legitimately does), so every example starts
  from the same data.

Routes are enumerated from the Klein app's ``url_map``: a new route is fuzzed without
touching this module; path variables are filled from their names (a seeded UDID, command
UUID, link id... ) or with fuzzed text. The database fingerprint is the sha256 of
``iterdump()`` of the store's connection, as in test_properties.py.

Not covered here: the 1 MiB body limit (``DrainingSite``, not the resource), and the
success paths of routes that call Apple (no DEP/VPP service is reachable here; their input
checks run before the token check, so the parsing is fuzzed all the same).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from mdmappliance.admin.api import AdminAPI
from mdmappliance.admin.context import AdminContext
from mdmappliance.app.admin_listener import command_sender
from mdmappliance.app.dep_service import dep_runtime
from mdmappliance.app.vpp_service import vpp_runtime
from mdmappliance.commands.queue import enqueue
from mdmappliance.config import load_config
from mdmappliance.device.handlers import handle_message
from mdmappliance.device.policy import ChannelPolicy
from mdmappliance.enrollment.links import create_link
from mdmappliance.pki.escrow import Escrow, new_key
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.simulator.device import TOPIC, issue_device_identity
from mdmappliance.store import Store, Tx
from tests.support import enrollment_checkins, make_installation

EXAMPLES = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

KEY = "f" * 40
READ_KEY = "r" * 40
UDID = "ADMIN-PROPERTY-DEVICE-0001"
#: Answers that are not JSON by design: the Prometheus text of a 200 from /metrics.
NOT_JSON = {("/metrics", 200)}


class _InlineReactor:
    """What the store asks of its reactor: ``callFromThread``, run at once."""

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        f(*args, **kw)


class _InlinePool:
    """The store's one-thread pool, run on the calling thread: the store's ``_work`` loop
    runs inline (work submitted while it runs is queued and taken by the same loop)."""

    def callInThread(self, f: Any, *args: Any, **kw: Any) -> None:
        f(*args, **kw)

    def stop(self) -> None:
        pass


@implementer(IBodyProducer)
class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


# --- what is fuzzed -------------------------------------------------------------------------

#: Text that often breaks number and UDID parsing.
NASTY_TEXT = (
    "",
    "0",
    "-1",
    "1",
    "+1",
    " 1",
    "1.5",
    "1e3",
    "nan",
    "NaN",
    "inf",
    "Infinity",
    "¹",
    "٣",
    "\uff11\uff12",  # fullwidth digits
    "0x10",
    "9223372036854775807",
    "9223372036854775808",
    "99999999999999999999",
    "9" * 5000,
    "x" * 5000,
    "null",
    "true",
    "%",
    "%00",
    "\x00",
    "../..",
    "a/b",
    "é",
    "\U0001f600",
)
texts = st.sampled_from(NASTY_TEXT) | st.text(max_size=40)
#: Percent-encoded query values, some not UTF-8 at all.
RAW_VALUES = ("%C2%B9", "%FF", "%FE%FF", "%", "%zz", "%00", "+", "a%20b", "")
QUERY_KEYS = (
    "after",
    "limit",
    "cursor",
    "state",
    "kinds",
    "platform",
    "serial",
    "user_id",
    "udid",
)
STATES = ("enrolled", "authenticated", "checked_out", "retired", "inactive", "queued", "sent")


def _encode(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


query_pairs = st.lists(
    st.tuples(
        st.sampled_from(QUERY_KEYS) | st.text(max_size=8).map(_encode),
        st.sampled_from(RAW_VALUES)
        | (texts | st.sampled_from(STATES) | st.integers().map(str)).map(_encode),
    ),
    max_size=5,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**20, max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
#: The fields the routes read, each with values near the valid ones or anything.
FIELDS = {
    "udids": st.just([UDID]) | st.lists(texts, max_size=3),
    "udid": st.just(UDID) | texts,
    "all": st.booleans(),
    "push": st.booleans(),
    "partial": st.booleans(),
    "sign_profile": st.booleans(),
    "confirm_clear_passcode": st.booleans(),
    "unchecked": st.booleans(),
    "now": st.booleans(),
    "confirm": st.booleans(),
    "default": st.booleans(),
    "invite": st.booleans(),
    "command": st.fixed_dictionaries(
        {
            "RequestType": st.sampled_from(
                ("DeviceInformation", "ProfileList", "DeviceLock", "EraseDevice", "Nope")
            )
            | json_values
        },
        optional={"Queries": json_values, "PIN": json_values},
    ),
    "expires": st.sampled_from(("1h", "7d", "0", "-1d", "999999d", "")) | json_values,
    "note": texts,
    "devices": st.lists(st.sampled_from(("C02ABC123", "X" * 65, "")) | texts, max_size=3),
    "profile": st.dictionaries(
        st.sampled_from(("profile_name", "url", "is_supervised", "anchor_certs")) | texts,
        json_values,
        max_size=4,
    ),
    "email": st.just("a@example.com") | texts,
    "adam_id": st.sampled_from((1, 0, -1, 2**63, "361309726", "¹")) | json_values,
    "pricing_param": st.sampled_from(("STDQ", "PLUS", "")) | json_values,
    "user_id": st.sampled_from((1, 0, 2**70, "1")) | json_values,
    "client_user_id": texts,
}
#: Valid bodies of the write routes, to be varied one field at a time.
COMMAND = {"RequestType": "DeviceInformation", "Queries": ["DeviceName"]}
TEMPLATES: tuple[dict[str, Any], ...] = (
    {"udids": [UDID], "command": COMMAND},
    {"all": True, "command": COMMAND, "push": False},
    {"udids": [UDID, "NOT-HERE"], "command": COMMAND, "partial": True},
    {"udids": [UDID], "command": {"RequestType": "EraseDevice", "PIN": "123456"}},
    {"udids": [UDID]},
    {"all": True},
    {"now": True},
    {"now": False},
    {"expires": "1h", "note": "fuzz"},
    {"devices": ["C02ABC123"]},
    {"devices": ["C02ABC123"], "confirm": True},
    {"profile": {"profile_name": "fuzz"}, "default": False},
    {"udid": UDID, "email": "a@example.com", "invite": False},
    {"udid": UDID, "adam_id": 361309726, "pricing_param": "STDQ"},
    {"email": "a@example.com"},
    {"user_id": 1},
    {"client_user_id": "0123456789abcdef"},
    {},
)

#: Which templates each write route takes (a route not named here gets any of them).
ROUTE_TEMPLATES = {
    "/v1/commands": TEMPLATES[0:4],
    "/v1/push": TEMPLATES[4:6],
    "/v1/devices/<string:udid>/retire": TEMPLATES[6:8],
    "/v1/enrollment-tokens": TEMPLATES[8:9],
    "/v1/dep/remove-profile": TEMPLATES[9:10],
    "/v1/dep/disown": TEMPLATES[10:11],
    "/v1/dep/profiles/<string:profile_uuid>/devices": TEMPLATES[9:10],
    "/v1/dep/profiles": TEMPLATES[11:12],
    "/v1/vpp/users": TEMPLATES[12:13],
    "/v1/vpp/install": TEMPLATES[13:14],
    "/v1/vpp/users/<int:user_id>/edit": TEMPLATES[14:15],
    "/v1/vpp/licenses/<int:license_id>/associate": TEMPLATES[15:17],
}


def _vary(template: dict[str, Any], draw: Any) -> dict[str, Any]:
    body = dict(template)
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(sorted(FIELDS)))
        if name in body and draw(st.booleans()):
            del body[name]
        else:
            body[name] = draw(FIELDS[name] | json_values)
    return body


def varied(templates: tuple[dict[str, Any], ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(templates).flatmap(
        lambda template: st.composite(lambda draw: _vary(template, draw))()
    )


near_bodies = varied(TEMPLATES) | st.fixed_dictionaries(
    {}, optional={name: values | json_values for name, values in FIELDS.items()}
)


def _dumps(value: Any) -> bytes:
    """JSON text, with Python's NaN and Infinity literals where the value has them."""
    return json.dumps(value, allow_nan=True).encode()


RAW_BODIES = (
    b"",
    b" ",
    b"null",
    b"[]",
    b"NaN",
    b'{"limit": NaN}',
    b'{"all": Infinity}',
    b'{"now": -Infinity}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"udids": [' + b"9" * 5000 + b"]}",
    b'{"adam_id": 1e999}',
    b'{"note": "\\ud800"}',
    b"\xff\xfe{}",
    b"\xef\xbb\xbf{}",
    b'{"a": 1, "a": 2}',
)
bodies = (
    near_bodies.map(_dumps)
    | json_values.map(_dumps)
    | st.sampled_from(RAW_BODIES)
    | st.binary(max_size=200)
)


class AdminRoutes(SynchronousTestCase):
    """Every route of the real admin resource, on the real store, in memory."""

    def setUp(self) -> None:
        config = load_config(make_installation(Path(self.mktemp())))
        store = Store(config.store.path, synchronous="OFF")
        store.open()
        self.addCleanup(store.close)
        self._seed(store, config)
        # From here on the store's jobs run inline (see the module docstring).
        store._reactor = _InlineReactor()  # type: ignore[assignment]
        store._pool = _InlinePool()  # type: ignore[assignment]
        self.addCleanup(setattr, store, "_pool", None)
        self.store = store
        clock = Clock()
        clock.advance(1_700_000_000)
        context = AdminContext(
            store=store,
            clock=clock,
            started_at=clock.seconds(),
            link_url=config.enrollment_url,
            profile_identifier=config.profile_identifier(),
            push=None,
            sender=command_sender(config, store, None),
            dep=dep_runtime(config, clock, store),  # type: ignore[arg-type]
            vpp=vpp_runtime(config, clock, store),  # type: ignore[arg-type]
        )
        self.api = AdminAPI(context)
        self.agent = RequestTraversalAgent(
            self.api.resource({"admin": KEY, "reader": (READ_KEY, "read")})
        )
        self.rules = sorted(
            (
                (rule.rule, method)
                for rule in self.api.app.url_map.iter_rules()
                for method in sorted(rule.methods or ())
            ),
        )
        self.pristine = sqlite3.connect(":memory:")
        self.addCleanup(self.pristine.close)
        self._conn().backup(self.pristine)
        self.seeded = self.fingerprint()

    def _seed(self, store: Store, config: Any) -> None:
        """One enrolled device with queued commands, and an enrollment link."""
        issued = issue_device_identity(config.pki.ca_cert, config.pki.ca_key, UDID)
        identity = DeviceIdentity.of(issued.certificate, "tls")
        policy = ChannelPolicy(escrow=Escrow(new_key()), topic=TOPIC)
        for parsed in enrollment_checkins(UDID, TOPIC):
            store.transaction_now(handle_message, parsed, identity, policy, ())

        def commands(tx: Tx) -> list[str]:
            enrollment = tx.enrollments.get(UDID)
            assert enrollment is not None
            return [
                enqueue(tx, enrollment.id, {"RequestType": "DeviceInformation", "Queries": []})
                for _ in range(3)
            ]

        self.command_uuids = store.transaction_now(commands)
        _, link = store.transaction_now(create_link, datetime.timedelta(days=1), "seed", "t")
        self.link_id = str(link.id)

    # --- helpers ----------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = self.store._conn
        assert conn is not None
        return conn

    def fingerprint(self) -> str:
        """The database's content (not its pages)."""
        return hashlib.sha256("\n".join(self._conn().iterdump()).encode()).hexdigest()

    def restore(self) -> str:
        """The seeded database back (an earlier example may have changed it); its
        fingerprint."""
        current = self.fingerprint()
        if current != self.seeded:
            self.pristine.backup(self._conn())
            current = self.fingerprint()
            self.assertEqual(current, self.seeded)
        return current

    def valid_values(self, name: str) -> st.SearchStrategy[str]:
        """Values a path variable of this name takes when it names something real."""
        by_name = {
            "udid": st.just(UDID),
            "command_uuid": st.sampled_from(self.command_uuids),
            "link_id": st.just(self.link_id),
            "serial": st.just("C02ABC123"),
            "profile_uuid": st.just("0123-ABCD"),
            "user_id": st.sampled_from(("1", "9223372036854775807")),
            "license_id": st.sampled_from(("1", "9223372036854775807")),
        }
        return by_name.get(name, st.just("1"))

    def path_of(self, data: st.DataObject, rule: str) -> str:
        """The rule with each ``<converter:name>`` filled: a real value, or fuzzed text."""

        def fill(match: re.Match[str]) -> str:
            name = match.group(2)
            value = data.draw(self.valid_values(name) | texts, label=name)
            return (
                _encode(value)
                if data.draw(st.booleans(), label="encode")
                else (quote(value.encode("utf-8", "surrogatepass"), safe="/%"))
            )

        return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", fill, rule)

    def request(
        self, method: str, uri: str, body: bytes, authorization: bytes | None
    ) -> tuple[int, bytes]:
        headers = Headers({b"content-type": [b"application/json"]})
        if authorization is not None:
            headers.addRawHeader(b"authorization", authorization)
        answered = self.agent.request(
            method.encode(),
            b"http://admin.test" + uri.encode("ascii"),
            headers,
            _Body(body) if body or method in ("POST", "PUT", "DELETE") else None,
        )
        self.agent.flush()
        response = self.successResultOf(answered)
        read = readBody(response)
        self.agent.flush()
        return response.code, self.successResultOf(read)

    def check(
        self, method: str, path: str, query: str, body: bytes, authorization: bytes | None
    ) -> int:
        """One request: never a 5xx, JSON unless HEAD or /metrics, nothing changed when
        refused. Returns the status."""
        before = self.restore()
        uri = path + (f"?{query}" if query else "")
        code, content = self.request(method, uri, body, authorization)
        where = f"{method} {uri[:300]!r} body={body[:300]!r} auth={authorization!r}"
        self.assertLess(code, 500, f"{where} -> {code} {content[:2000]!r}")
        route = path.split("?")[0]
        if method != "HEAD" and (route, code) not in NOT_JSON:
            try:
                json.loads(content)
            except ValueError:
                self.fail(f"{where} -> {code}, not JSON: {content[:500]!r}")
        if code >= 400:
            self.assertEqual(self.fingerprint(), before, f"{where} -> {code} changed the database")
        return code

    # --- the properties ---------------------------------------------------------------------

    def test_every_route_is_found(self) -> None:
        """The enumeration sees the routes (a guard against fuzzing nothing)."""
        paths = {rule for rule, _ in self.rules}
        self.assertIn("/v1/commands", paths)
        self.assertIn("/v1/devices/<string:udid>/retire", paths)
        self.assertGreaterEqual(len(paths), 30)

    @EXAMPLES
    @given(st.data())
    def test_routes_with_fuzzed_paths_queries_and_bodies(self, data: st.DataObject) -> None:
        rule, method = data.draw(st.sampled_from(self.rules), label="route")
        path = self.path_of(data, rule)
        query = "&".join(f"{k}={v}" for k, v in data.draw(query_pairs, label="query"))
        body = data.draw(bodies, label="body") if method in ("POST", "PUT", "DELETE") else b""
        self.check(method, path, query, body, b"Bearer " + KEY.encode())

    @EXAMPLES
    @given(st.data())
    def test_write_routes_with_near_valid_bodies(self, data: st.DataObject) -> None:
        """The write routes with real path values and bodies of their own fields, where
        parsing goes deepest (and a success, which may change the database, is likelier)."""
        writes = [(r, m) for r, m in self.rules if m in ("POST", "PUT", "DELETE")]
        rule, method = data.draw(st.sampled_from(writes), label="route")
        path = re.sub(
            r"<(?:(\w+):)?(\w+)>",
            lambda m: _encode(data.draw(self.valid_values(m.group(2)), label=m.group(2))),
            rule,
        )
        own = varied(ROUTE_TEMPLATES.get(rule, TEMPLATES))
        body = data.draw((own | own | own | near_bodies).map(_dumps), label="body")
        self.check(method, path, "", body, b"Bearer " + KEY.encode())

    @EXAMPLES
    @given(st.data())
    def test_read_routes_with_fuzzed_queries(self, data: st.DataObject) -> None:
        reads = [(r, m) for r, m in self.rules if m in ("GET", "HEAD")]
        rule, method = data.draw(st.sampled_from(reads), label="route")
        path = re.sub(
            r"<(?:(\w+):)?(\w+)>",
            lambda m: _encode(data.draw(self.valid_values(m.group(2)), label=m.group(2))),
            rule,
        )
        query = "&".join(f"{k}={v}" for k, v in data.draw(query_pairs, label="query"))
        self.check(method, path, query, b"", b"Bearer " + KEY.encode())

    @settings(EXAMPLES, max_examples=60)
    @given(
        st.data(),
        st.sampled_from(
            (
                None,
                b"",
                b"Bearer ",
                b"Bearer " + KEY.encode() + b"x",
                b"Basic " + KEY.encode(),
                KEY.encode(),
                b"Bearer " + READ_KEY.encode(),
                b"bearer  " + READ_KEY.encode(),
                b"Bearer \xff\xfe",
            )
        )
        | st.binary(max_size=60),
    )
    def test_routes_without_the_key_or_with_a_read_only_one(
        self, data: st.DataObject, authorization: bytes | None
    ) -> None:
        """No key, a wrong one, or the read-only one: 401 for the first two (403 for the
        read-only key's writes), and nothing changes."""
        rule, method = data.draw(st.sampled_from(self.rules), label="route")
        if authorization is not None and (
            b"\r" in authorization or b"\n" in authorization or b"\x00" in authorization
        ):
            authorization = authorization.translate(None, b"\r\n\x00")  # a header line
        path = self.path_of(data, rule)
        body = data.draw(bodies, label="body") if method in ("POST", "PUT", "DELETE") else b""
        code = self.check(method, path, "", body, authorization)
        scheme, _, presented = (authorization or b"").partition(b" ")
        bearer = scheme.lower() == b"bearer"
        if bearer and presented.strip() == KEY.encode():
            return
        if bearer and presented.strip() == READ_KEY.encode():
            if method not in ("GET", "HEAD"):
                self.assertEqual(code, 403)
        else:
            self.assertEqual(code, 401)
