"""The fast plist reader (``mdm.plist``) against plistlib, the judge it defers to: for every
body, ``parse_plist`` gives what plistlib alone gives (the same value, or a BadMessage with
the same words), and it takes the fast road for what devices really send."""

from __future__ import annotations

import datetime
import plistlib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmappliance.mdm.errors import BadMessage
from mdmappliance.mdm.messages import parse_plist, parse_plist_with_plistlib
from mdmappliance.mdm.plist import read_plain_plist

DEPTH = 32
TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
EXAMPLES = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Text XML can carry (expat turns a lone CR into LF for both readers alike).
TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
    | st.sampled_from("\t\n\r <>&'\""),
    max_size=40,
)
LEAVES = (
    TEXT
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.binary(max_size=64)
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=30,
)


def outcome(read: Any, body: bytes) -> tuple[str, Any]:
    try:
        return "value", read(body, DEPTH)
    except BadMessage as e:
        return "refused", str(e)


def same(a: Any, b: Any) -> bool:
    """Equal, NaN included (a NaN is not equal to itself)."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class AgreesWithPlistlib(SynchronousTestCase):
    def assertAgrees(self, body: bytes) -> None:
        fast, judge = outcome(parse_plist, body), outcome(parse_plist_with_plistlib, body)
        self.assertEqual(fast[0], judge[0], body[:300])
        self.assertTrue(same(fast[1], judge[1]), (fast, judge))

    @EXAMPLES
    @given(st.dictionaries(TEXT, VALUES, max_size=8), st.booleans())
    def test_every_plain_plist_is_read_fast_and_alike(
        self, value: dict[str, Any], sort: bool
    ) -> None:
        body = plistlib.dumps(value, sort_keys=sort)
        fast = read_plain_plist(body, DEPTH)
        self.assertIsNotNone(fast, "the plain shape takes the fast road")
        self.assertTrue(same(fast, plistlib.loads(body)))

    @EXAMPLES
    @given(
        st.dictionaries(TEXT, VALUES, min_size=1, max_size=4),
        st.lists(
            st.tuples(st.integers(min_value=0), st.binary(min_size=0, max_size=12)),
            min_size=1,
            max_size=4,
        ),
        st.integers(min_value=0, max_value=3),
    )
    def test_a_mangled_plist_gets_plistlibs_verdict(
        self, value: dict[str, Any], edits: list[tuple[int, bytes]], cut: int
    ) -> None:
        body = bytearray(plistlib.dumps(value))
        for where, text in edits:  # replace a few bytes somewhere with others
            at = where % len(body)
            body[at : at + cut] = text
        self.assertAgrees(bytes(body))

    @EXAMPLES
    @given(
        st.lists(
            st.sampled_from(
                [
                    b"<dict>",
                    b"</dict>",
                    b"<array>",
                    b"</array>",
                    b"<key>k</key>",
                    b"<key/>",
                    b"<string>s</string>",
                    b"<integer>0x1F</integer>",
                    b"<integer>1_0</integer>",
                    b"<real>nan</real>",
                    b"<real>1e999</real>",
                    b"<true/>",
                    b"<false/>",
                    b"<data>AAE=</data>",
                    b"<data>!</data>",
                    b"<date>2026-12-02T10:00:00Z</date>",
                    b"<date>nope</date>",
                    b"<foo/>",
                    b"<!-- c -->",
                    b"<![CDATA[x]]>",
                    b"&amp;",
                    b"&nope;",
                    b" ",
                    b"<string>a<b/>c</string>",
                    b"<plist>",
                    b"</plist>",
                ]
            ),
            max_size=14,
        )
    )
    def test_element_soup_gets_plistlibs_verdict(self, parts: list[bytes]) -> None:
        self.assertAgrees(
            b'<?xml version="1.0" encoding="UTF-8"?><plist>' + b"".join(parts) + b"</plist>"
        )

    def test_what_plistlib_reads_its_own_way_is_left_to_it(self) -> None:
        date = datetime.datetime(2026, 12, 2, 10, 0, 0)
        bodies = {
            "a date": plistlib.dumps({"When": date}),
            "an entity declaration": b'<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY e "x">]>'
            b"<plist><dict><key>k</key><string>&e;</string></dict></plist>",
            "a comment": b"<plist><dict><key>k</key><string>a<!-- -->b</string></dict></plist>",
            "another encoding": '<?xml version="1.0" encoding="ISO-8859-1"?><plist><dict>'
            "<key>k</key><string>\u00e9</string></dict></plist>".encode("latin-1"),
            "UTF-16": plistlib.dumps({"k": "v"})
            .decode()
            .replace("UTF-8", "UTF-16")
            .encode("utf-16"),
            "a namespace": b'<plist xmlns="urn:x"><dict/></plist>',
            "an odd dictionary": b"<plist><dict><key>k</key></dict></plist>",
            "a key without value before another": (
                b"<plist><dict><key/><key>a</key><true/></dict></plist>"
            ),
            "two roots": b"<plist><dict/><dict/></plist>",
            "an unknown element": b"<plist><dict><key>k</key><uid>1</uid></dict></plist>",
            "a leading space": b" " + plistlib.dumps({"k": "v"}),
        }
        for why, body in bodies.items():
            self.assertIsNone(read_plain_plist(body, DEPTH), why)
            self.assertAgrees(body)

    def test_nesting_past_the_bound_is_refused_in_the_same_words(self) -> None:
        value: Any = "leaf"
        for _ in range(DEPTH):
            value = [value]
        body = plistlib.dumps({"k": value})
        self.assertIsNone(read_plain_plist(body, DEPTH))
        self.assertEqual(
            outcome(parse_plist, body), ("refused", "the plist nests deeper than 32 levels")
        )
        self.assertAgrees(plistlib.dumps({"k": value[0]}))

    def test_real_device_captures_are_read_fast_and_alike(self) -> None:
        captures = sorted(TESTDATA.glob("*/testdata/**/*.xml")) + sorted(
            TESTDATA.glob("*/testdata/**/*.plist")
        )
        if not captures:
            self.skipTest(f"no device captures under {TESTDATA}")
        fast = 0
        for capture in captures:
            body = capture.read_bytes()
            try:
                expected = plistlib.loads(body)
            except Exception:
                continue  # not an XML plist (or a binary one): nothing to compare
            read = read_plain_plist(body, 64)
            if read is not None:
                fast += 1
                self.assertTrue(same(read, expected), capture)
        self.assertGreater(fast, len(captures) // 2, "most real captures take the fast road")
