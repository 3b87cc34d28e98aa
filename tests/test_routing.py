"""Klein routes matched once per request target (``core/routing``): the same answers as
werkzeug's own matching, errors matched afresh every time, a bounded memory."""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from twisted.web.server import Site
from werkzeug.exceptions import BadHost, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.routing.exceptions import RequestRedirect

from mdmappliance.core.routing import REMEMBERED, RememberedRoutes, remembering_klein


def routes(*rules: Rule) -> RememberedRoutes:
    remembered = RememberedRoutes()
    for rule in rules:
        remembered.add(rule)
    return remembered


def bind(routes: Map, path: str, method: str = "PUT", host: str = "mdm.example:8443") -> Any:
    return routes.bind(host, "", path_info=path, default_method=method, url_scheme="https")


class Remembered(SynchronousTestCase):
    def test_klein_keeps_the_remembering_map(self) -> None:
        # Klein takes no map of its own choosing: this watches the attribute it is set on.
        self.assertIsInstance(remembering_klein().url_map, RememberedRoutes)

    def test_the_same_target_is_matched_once_and_answers_like_werkzeug(self) -> None:
        rules = [Rule("/mdm/connect", endpoint="server", methods=["PUT"])]
        remembered, plain = (
            routes(*rules),
            Map([Rule(r.rule, endpoint=r.endpoint, methods=["PUT"]) for r in rules]),
        )
        first = bind(remembered, "/mdm/connect")
        self.assertIs(bind(remembered, "/mdm/connect"), first)
        self.assertEqual(first.match(), bind(plain, "/mdm/connect").match())
        rule, arguments = first.match(return_rule=True)
        self.assertEqual((rule.endpoint, arguments), ("server", {}))
        self.assertIs(first.match(return_rule=True)[0], rule, "matched once, then remembered")

    def test_arguments_are_a_fresh_dict_each_time(self) -> None:
        remembered = routes(Rule("/enroll/<token>", endpoint="link"))
        adapter = bind(remembered, "/enroll/abc", "GET")
        _, arguments = adapter.match()
        self.assertEqual(arguments, {"token": "abc"})
        arguments["token"] = "changed"
        self.assertEqual(adapter.match(), ("link", {"token": "abc"}))
        self.assertEqual(bind(remembered, "/enroll/xyz", "GET").match(), ("link", {"token": "xyz"}))

    def test_what_does_not_match_is_matched_again_every_time(self) -> None:
        remembered = routes(
            Rule("/mdm/connect", endpoint="server", methods=["PUT"]),
            Rule("/dir/", endpoint="dir"),
        )
        for path, method, error in (
            ("/nowhere", "PUT", NotFound),
            ("/mdm/connect", "GET", MethodNotAllowed),
            ("/dir", "GET", RequestRedirect),
        ):
            adapter = bind(remembered, path, method)
            raised = []
            for _ in range(2):
                with self.assertRaises(error) as caught:
                    adapter.match(return_rule=True)
                raised.append(caught.exception)
            self.assertIsNot(raised[0], raised[1], f"{path}: a new error each time")

    def test_a_path_asked_for_explicitly_is_matched_as_asked(self) -> None:
        remembered = routes(
            Rule("/mdm/connect", endpoint="server"), Rule("/mdm/checkin", endpoint="checkin")
        )
        adapter = bind(remembered, "/mdm/connect", "GET")
        self.assertEqual(adapter.match()[0], "server")
        self.assertEqual(adapter.match("/mdm/checkin")[0], "checkin")
        self.assertEqual(adapter.match()[0], "server")

    def test_a_bad_host_is_refused_every_time_and_not_remembered(self) -> None:
        remembered = routes(Rule("/mdm/connect", endpoint="server"))
        for _ in range(2):
            with self.assertRaises(BadHost):
                bind(remembered, "/mdm/connect", host="x" * 64 + ".example")
        self.assertEqual(len(remembered._adapters), 0)

    def test_the_memory_is_bounded(self) -> None:
        remembered = routes(Rule("/mdm/connect", endpoint="server", methods=["PUT"]))
        kept = bind(remembered, "/mdm/connect", host="kept.example")
        for n in range(REMEMBERED * 3):
            bind(remembered, "/mdm/connect", host=f"host{n}.example")
            bind(remembered, "/mdm/connect", host="kept.example")  # used: stays
        self.assertEqual(len(remembered._adapters), REMEMBERED)
        self.assertIs(bind(remembered, "/mdm/connect", host="kept.example"), kept)

    def test_rules_given_to_the_constructor_are_routed(self) -> None:
        remembered = RememberedRoutes([Rule("/a", endpoint="a")])
        self.assertEqual(bind(remembered, "/a", "GET").match(), ("a", {}))

    def test_no_path_and_an_empty_path_are_told_apart_as_werkzeug_does(self) -> None:
        rules = [Rule("/", endpoint="root"), Rule("/a/", endpoint="a")]
        remembered, plain = routes(*rules), Map([Rule(r.rule, endpoint=r.endpoint) for r in rules])

        def answer(routes: Map, path: str | None) -> object:
            adapter = routes.bind("h", "", path_info=path)
            try:
                return adapter.match()
            except RequestRedirect as redirect:
                return ("redirect", redirect.new_url)

        for path in ("", None, "", "/", None):
            self.assertEqual(answer(remembered, path), answer(plain, path), repr(path))

    def test_a_rule_added_later_is_seen(self) -> None:
        remembered = routes(Rule("/old", endpoint="old"))
        with self.assertRaises(NotFound):
            bind(remembered, "/new", "GET").match()
        remembered.add(Rule("/new", endpoint="new"))
        self.assertEqual(bind(remembered, "/new", "GET").match(), ("new", {}))


class ThroughKlein(SynchronousTestCase):
    """Requests through twisted.web and Klein, answered as a plain Klein app answers them."""

    def app(self, klein: Klein) -> Klein:
        @klein.route("/mdm/connect", methods=["PUT"])
        def server(request: IRequest) -> bytes:
            request.setHeader(b"content-length", b"6")
            return b"server"

        @klein.route("/enroll/<token>", methods=["GET"])
        def link(request: IRequest, token: str) -> bytes:
            request.setHeader(b"content-length", str(len(token)).encode())
            return token.encode()

        return klein

    def answers(self, klein: Klein, requests: list[bytes]) -> list[bytes]:
        site = Site(self.app(klein).resource())
        channel = site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        answers = []
        for line in requests:
            channel.dataReceived(line + b"\r\nHost: mdm.example\r\nContent-Length: 0\r\n\r\n")
            head, _, body = transport.value().partition(b"\r\n\r\n")
            answers.append(head.split(b"\r\n", 1)[0] + b" " + body)  # status line, body
            transport.clear()
        channel.connectionLost(Failure(ConnectionDone()))  # and its idle timeout with it
        return answers

    def test_the_same_answers_as_klein_alone(self) -> None:
        requests = [
            b"PUT /mdm/connect HTTP/1.1",
            b"PUT /mdm/connect HTTP/1.1",
            b"GET /mdm/connect HTTP/1.1",
            b"GET /enroll/abc HTTP/1.1",
            b"GET /enroll/def HTTP/1.1",
            b"PUT /nowhere HTTP/1.1",
            b"GET /enroll/abc HTTP/1.1",
        ]
        remembered = self.answers(remembering_klein(), requests)
        self.assertEqual(remembered, self.answers(Klein(), requests))
        self.assertEqual(remembered[0], b"HTTP/1.1 200 OK server")
        self.assertEqual(remembered[4], b"HTTP/1.1 200 OK def")
        self.assertTrue(remembered[5].startswith(b"HTTP/1.1 404"), remembered[5])
