"""Webhook guard: loopback forms never reach a counting local listener; private and metadata
addresses are refused through classification or a connect that refuses and records. No test
sends a packet beyond this machine."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from threadline.errors import InvalidArgument
from threadline.monitor.webhook import (
    SIGNATURE_HEADER,
    Webhook,
    WebhookRefused,
    classify,
    parse_webhooks,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


# ---------------------------------------------------------------------------- a counting listener


class Listener(ThreadingHTTPServer):
    """A local HTTP server that counts connections and records requests."""

    daemon_threads = True

    def __init__(self, host: str, family: socket.AddressFamily) -> None:
        self.address_family = family
        super().__init__((host, 0), _Handler)
        self.connections = 0
        self.requests: list[dict[str, Any]] = []
        self.answer: Callable[[_Handler], None] = lambda h: h.reply(200, b"ok")
        self.release = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1  # called in the serving thread, once per accepted connection
        return True


class _Handler(BaseHTTPRequestHandler):
    server: Listener

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self.server.answer(self)

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def make_listener() -> Iterator[Callable[..., Listener]]:
    """`make_listener("127.0.0.1")` starts a counting listener; all are stopped at the end."""
    started: list[tuple[Listener, threading.Thread]] = []

    def make(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Listener:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server = Listener(host, family)
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield make
    for server, thread in started:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def listener(make_listener: Callable[..., Listener]) -> Listener:
    return make_listener("127.0.0.1")


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record every connect; only loopback connects go through, all others are refused."""
    attempts: list[tuple[str, int]] = []
    real = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> None:
        attempts.append((str(address[0]), int(address[1])))
        if ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback:
            return real(self, address)
        raise ConnectionRefusedError(f"test: no connect to {address[0]}")

    def guarded_ex(self: socket.socket, address: Any) -> int:
        attempts.append((str(address[0]), int(address[1])))
        return 111

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_ex)
    return attempts


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, list[str]]], list[str]]:
    """`resolver({"internal.example": ["10.0.0.5"]})`: made-up names resolve offline.

    Other names fail to resolve, except numeric forms and `localhost`, which the system
    resolves without a DNS query. Returns the list of names looked up.
    """
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def install(table: dict[str, list[str]]) -> list[str]:
        def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
            name = str(host)
            looked_up.append(name)
            if name in table:
                return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0)) if ":" in a
                        else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in table[name]]
            if name == "localhost" or all(c in "0123456789abcdefx.:" for c in name.lower()):
                return real(host, port, *args, **kwargs)
            raise socket.gaierror(socket.EAI_NONAME, "test: unknown name")

        monkeypatch.setattr(socket, "getaddrinfo", fake)
        return looked_up

    return install


def _signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------- classification


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"), ("[::1]", "loopback"),
    ("10.0.0.5", "private"), ("10.255.255.255", "private"), ("172.16.0.1", "private"),
    ("172.31.255.254", "private"), ("192.168.1.1", "private"), ("fc00::1", "private"),
    ("fd12:3456::1", "private"), ("fec0::1", "private"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"), ("fe80::1%eth0", "link-local"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"), ("100.100.100.200", "metadata"),
    ("169.254.170.2", "metadata"), ("168.63.129.16", "metadata"),
    ("100.64.0.1", "cgnat"), ("100.127.255.254", "cgnat"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.5", "private"),
    ("::ffff:169.254.169.254", "metadata"), ("::ffff:7f00:1", "loopback"),
    ("2002:7f00:1::1", "loopback"), ("2002:a00:5::1", "private"),  # 6to4 of 127.0.0.1 / 10.0.0.5
    ("64:ff9b::a00:5", "private"), ("64:ff9b::169.254.169.254", "metadata"),  # NAT64
    ("::7f00:1", "loopback"),  # deprecated IPv4-compatible
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("239.1.1.1", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("192.0.2.10", "reserved"),
    ("198.18.0.1", "reserved"), ("2001:db8::1", "reserved"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "reserved"),  # Teredo
])
def test_classify_refuses_non_public_addresses(address: str, reason: str) -> None:
    assert classify(address) == reason


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2001:4860:4860::8888",
    "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::8.8.8.8",
])
def test_classify_passes_public_addresses(address: str) -> None:
    # classification only: nothing here connects anywhere
    assert classify(address) is None
    assert classify(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("text", ["localhost", "example.com", "", "1.2.3", "::g"])
def test_classify_needs_an_ip_address(text: str) -> None:
    with pytest.raises(InvalidArgument, match="is not an IP address"):
        classify(text)


# ---------------------------------------------------------------------------- refusals, zero packets


LOOPBACK_FORMS = [
    "http://127.0.0.1:{port}/hook", "http://0x7f000001:{port}/", "http://2130706433:{port}/",
    "http://localhost:{port}/", "http://LOCALHOST.:{port}/", "http://127.1:{port}/",
    "http://017700000001:{port}/", "http://[::ffff:127.0.0.1]:{port}/", "http://127.0.0.1.:{port}/",
    "http://127\u30020\u30020\u30021:{port}/",  # ideographic full stops, mapped to dots by IDNA
    "http://\uff11\uff12\uff17.0.0.1:{port}/",  # fullwidth digits
]


@pytest.mark.parametrize("template", LOOPBACK_FORMS)
def test_loopback_forms_are_refused_without_a_connection(
        template: str, listener: Listener, connects: list[tuple[str, int]]) -> None:
    hook = Webhook(template.format(port=listener.port))
    with pytest.raises(WebhookRefused, match=r"refused: loopback address; add .* allow list") as caught:
        hook.post({"event": "firing"})
    assert caught.value.reason == "loopback"
    assert classify(caught.value.address or "") == "loopback"
    assert listener.connections == 0
    assert connects == []


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_loopback_is_refused_without_a_connection(
        make_listener: Callable[..., Listener], connects: list[tuple[str, int]]) -> None:
    listener6 = make_listener("::1")
    with pytest.raises(WebhookRefused, match=r"webhook to ::1 refused: loopback") as caught:
        Webhook(f"http://[::1]:{listener6.port}/").post({})
    assert caught.value.address == "::1"
    assert listener6.connections == 0
    assert connects == []
    # the same listener is reachable when allowed: the count above is meaningful
    assert Webhook(f"http://[::1]:{listener6.port}/", allow=["::1"]).post({}).ok
    assert listener6.connections == 1


def test_a_name_resolving_to_loopback_is_refused(
        listener: Listener, resolver: Callable[..., list[str]], connects: list[tuple[str, int]]) -> None:
    resolver({"hooks.attacker.test": ["127.0.0.1"]})
    with pytest.raises(WebhookRefused, match=r"hooks.attacker.test \(127.0.0.1\) refused: loopback"):
        Webhook(f"http://hooks.attacker.test:{listener.port}/").post({})
    assert listener.connections == 0
    assert connects == []


@pytest.mark.parametrize(("addresses", "reason"), [
    (["10.0.0.5"], "private"),
    (["169.254.169.254"], "metadata"),
    (["fd00:ec2::254"], "metadata"),
    (["100.64.1.1"], "cgnat"),
    (["8.8.8.8", "192.168.0.10"], "private"),  # one bad address refuses the whole host
])
def test_private_and_metadata_resolutions_are_refused_before_any_connect(
        addresses: list[str], reason: str, resolver: Callable[..., list[str]],
        connects: list[tuple[str, int]]) -> None:
    resolver({"internal.example": addresses})
    with pytest.raises(WebhookRefused, match=f"refused: {reason} address") as caught:
        Webhook("http://internal.example/hook").post({"event": "firing"})
    assert caught.value.reason == reason
    assert caught.value.host == "internal.example"
    assert connects == []


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://10.0.0.5/",
    "http://[::ffff:a9fe:a9fe]/", "http://0.0.0.0:80/", "http://[::]/",
])
def test_literal_internal_addresses_are_refused_before_any_connect(
        url: str, connects: list[tuple[str, int]]) -> None:
    with pytest.raises(WebhookRefused):
        Webhook(url).post({})
    assert connects == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1:70/",
                                 "dict://localhost:11211/", "//example.com/x"])
def test_only_http_and_https_are_allowed(url: str) -> None:
    with pytest.raises(WebhookRefused, match="only http and https are allowed") as caught:
        Webhook(url)
    assert caught.value.reason == "scheme"


# ---------------------------------------------------------------------------- allowed deliveries


def test_allowed_loopback_receives_json_and_signature(listener: Listener) -> None:
    hook = Webhook(f"http://127.0.0.1:{listener.port}/hook?token=abc", allow=["127.0.0.1"],
                   secret="s3cret", headers={"X-Team": "ml"})
    result = hook.post({"event": "firing", "value": 0.5})
    assert result.ok
    assert (result.status, result.error, result.redirects) == (200, None, 0)
    (request,) = listener.requests
    assert request["path"] == "/hook?token=abc"
    assert json.loads(request["body"]) == {"event": "firing", "value": 0.5}
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Host"] == f"127.0.0.1:{listener.port}"
    assert request["headers"]["X-Team"] == "ml"
    assert request["headers"][SIGNATURE_HEADER] == _signature("s3cret", request["body"])
    assert listener.connections == 1


def test_a_non_ascii_path_is_percent_encoded(listener: Listener) -> None:
    hook = Webhook(f"http://127.0.0.1:{listener.port}/h\u00e9/a%20b?q=\u00fc", allow=["127.0.0.1"])
    assert hook.post({}).ok
    assert listener.requests[0]["path"] == "/h%C3%A9/a%20b?q=%C3%BC"


def test_no_signature_without_a_secret(listener: Listener) -> None:
    assert Webhook(f"http://127.0.0.1:{listener.port}/", allow=["127.0.0.0/8"]).post({"a": 1}).ok
    assert SIGNATURE_HEADER not in listener.requests[0]["headers"]


def test_bracketed_and_mapped_allow_entries(make_listener: Callable[..., Listener]) -> None:
    listener = make_listener("127.0.0.1")
    assert Webhook(f"http://[::ffff:127.0.0.1]:{listener.port}/", allow=["127.0.0.1"]).post({}).ok
    assert Webhook(f"http://127.0.0.1:{listener.port}/", allow=["[::ffff:127.0.0.1]"]).post({}).ok


def test_allowing_a_host_name_allows_what_it_resolves_to(listener: Listener) -> None:
    assert Webhook(f"http://localhost:{listener.port}/", allow=["localhost"]).post({"a": 1}).ok
    assert listener.requests[0]["headers"]["Host"] == f"localhost:{listener.port}"


def test_connection_goes_to_the_checked_address_with_the_name_as_host(
        listener: Listener, resolver: Callable[..., list[str]]) -> None:
    # a rebinding resolver would answer differently on a second lookup: there is none
    looked_up = resolver({"hooks.internal.test": ["127.0.0.1"]})
    result = Webhook(f"http://hooks.internal.test:{listener.port}/x", allow=["127.0.0.1"]).post({})
    assert result.ok
    assert looked_up == ["hooks.internal.test"]
    assert listener.requests[0]["headers"]["Host"] == f"hooks.internal.test:{listener.port}"


def test_an_allowed_range_is_connected_to_the_checked_address_only(
        resolver: Callable[..., list[str]], connects: list[tuple[str, int]]) -> None:
    resolver({"internal.example": ["10.0.0.5"]})
    result = Webhook("http://internal.example:8080/", allow=["10.0.0.0/8"]).post({})
    assert not result.ok
    assert result.error is not None
    assert "test: no connect to 10.0.0.5" in result.error
    assert connects == [("10.0.0.5", 8080)]  # refused and recorded by the test: no packet


def test_neither_a_range_nor_a_name_opens_a_metadata_address(
        resolver: Callable[..., list[str]], connects: list[tuple[str, int]]) -> None:
    with pytest.raises(WebhookRefused, match="metadata"):
        Webhook("http://169.254.169.254/", allow=["169.254.0.0/16"]).post({})
    with pytest.raises(WebhookRefused, match="metadata"):
        Webhook("http://169.254.169.254/", allow=["0.0.0.0/0"]).post({})
    resolver({"metadata.test": ["169.254.169.254"]})
    with pytest.raises(WebhookRefused, match="metadata"):  # an allowed name that resolves there
        Webhook("http://metadata.test/", allow=["metadata.test"]).post({})
    assert connects == []
    Webhook("http://169.254.169.254/", allow=["169.254.169.254"]).post({})  # named exactly
    assert connects == [("169.254.169.254", 80)]


# ---------------------------------------------------------------------------- redirects


def _redirect_to(location: str, status: int = 302) -> Callable[[_Handler], None]:
    return lambda h: h.reply(status, b"moved", {"Location": location})


@pytest.mark.parametrize("host", ["127.0.0.2", "127.0.0.1"])
def test_redirect_to_a_loopback_address_not_allowed_is_refused(
        host: str, make_listener: Callable[..., Listener], connects: list[tuple[str, int]]) -> None:
    first = make_listener("127.0.0.1")
    second = make_listener("127.0.0.2")
    # allowed: only the first listener's exact address and port is reached
    first.answer = _redirect_to(f"http://{host}:{second.port}/next")
    allow = ["127.0.0.1"] if host == "127.0.0.2" else []
    hook = Webhook(f"http://localhost:{first.port}/", allow=[*allow, "localhost"])
    if host == "127.0.0.1":
        with pytest.raises(WebhookRefused, match=r"webhook to 127\.0\.0\.1 refused: loopback"):
            hook.post({})
    else:
        with pytest.raises(WebhookRefused, match=r"webhook to 127\.0\.0\.2 refused: loopback") as caught:
            hook.post({})
        assert caught.value.address == "127.0.0.2"
    assert first.connections >= 1
    assert second.connections == 0
    assert all(addr[0] != "127.0.0.2" for addr in connects)


@pytest.mark.parametrize(("location", "table", "reason"), [
    ("http://internal.example/x", {"internal.example": ["10.0.0.5"]}, "private"),
    ("http://metadata.test/latest/meta-data/", {"metadata.test": ["169.254.169.254"]}, "metadata"),
    ("http://169.254.169.254/latest/meta-data/", {}, "metadata"),
    ("http://[fd00:ec2::254]/", {}, "metadata"),
    ("http://192.168.1.1/", {}, "private"),
])
def test_redirect_to_private_or_metadata_is_refused_before_any_connect(
        location: str, table: dict[str, list[str]], reason: str, listener: Listener,
        resolver: Callable[..., list[str]], connects: list[tuple[str, int]]) -> None:
    resolver(table)
    listener.answer = _redirect_to(location, 307)
    with pytest.raises(WebhookRefused, match=f"refused: {reason} address") as caught:
        Webhook(f"http://127.0.0.1:{listener.port}/", allow=["127.0.0.1"]).post({})
    assert caught.value.reason == reason
    assert connects == [("127.0.0.1", listener.port)]  # the allowed first hop, nothing after


@pytest.mark.parametrize("location", ["file:///etc/passwd", "gopher://127.0.0.1:70/_x"])
def test_redirect_to_another_scheme_is_refused(location: str, listener: Listener) -> None:
    listener.answer = _redirect_to(location)
    with pytest.raises(WebhookRefused, match="only http and https"):
        Webhook(f"http://127.0.0.1:{listener.port}/", allow=["127.0.0.1"]).post({})
    assert listener.connections == 1


def test_allowed_redirect_reposts_and_drops_credentials_across_origins(
        make_listener: Callable[..., Listener]) -> None:
    first, second = make_listener("127.0.0.1"), make_listener("127.0.0.2")
    first.answer = _redirect_to(f"http://127.0.0.2:{second.port}/final", 308)
    hook = Webhook(f"http://127.0.0.1:{first.port}/", allow=["127.0.0.0/8"], secret="k",
                   headers={"Authorization": "Bearer t0ken", "X-Team": "ml"})
    result = hook.post({"n": 1})
    assert (result.ok, result.redirects) == (True, 1)
    assert first.requests[0]["headers"]["Authorization"] == "Bearer t0ken"
    (final,) = second.requests
    assert final["path"] == "/final"
    assert json.loads(final["body"]) == {"n": 1}
    assert "Authorization" not in final["headers"]
    assert final["headers"]["X-Team"] == "ml"
    assert final["headers"][SIGNATURE_HEADER] == _signature("k", final["body"])


def test_a_malformed_redirect_is_refused(listener: Listener) -> None:
    listener.answer = _redirect_to("http://[::1/x")
    refused = r"webhook redirect from http://127\.0\.0\.1:\d+ refused: bad Location: Invalid IPv6 URL"
    with pytest.raises(WebhookRefused, match=refused) as caught:
        Webhook(f"http://127.0.0.1:{listener.port}/", allow=["127.0.0.1"]).post({})
    assert caught.value.reason == "redirect"


def test_redirects_stop_when_time_is_up(listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([0.0, 10.0])
    monkeypatch.setattr("threadline.monitor.webhook._monotonic", lambda: next(ticks))
    listener.answer = _redirect_to("/again")
    result = Webhook(f"http://127.0.0.1:{listener.port}/", allow=["127.0.0.1"], timeout_s=5).post({})
    assert result.error == "timed out after 1 redirect(s)"
    assert listener.connections == 1


def test_redirects_stop_at_the_limit(listener: Listener) -> None:
    listener.answer = _redirect_to("/again")
    result = Webhook(f"http://127.0.0.1:{listener.port}/", allow=["127.0.0.1"], max_redirects=2).post({})
    assert not result.ok
    assert result.error == "too many redirects (more than 2)"
    assert result.status == 302
    assert listener.connections == 3


def test_https_never_downgrades_to_http(resolver: Callable[..., list[str]],
                                        connects: list[tuple[str, int]],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    resolver({"hooks.example.test": ["8.8.8.8"]})  # public, but nothing is sent: _send is faked
    hook = Webhook("https://hooks.example.test/x")
    monkeypatch.setattr(hook, "_send", lambda *a: (302, "http://hooks.example.test/plain", ""))
    with pytest.raises(WebhookRefused, match="https must not downgrade to http") as caught:
        hook.post({})
    assert caught.value.reason == "downgrade"
    assert connects == []


# ---------------------------------------------------------------------------- delivery failures


def test_non_2xx_is_a_failed_result(listener: Listener) -> None:
    listener.answer = lambda h: h.reply(500, b"boom\x00\n")
    result = Webhook(f"http://127.0.0.1:{listener.port}/", allow=["127.0.0.1"]).post({})
    assert (result.ok, result.status) == (False, 500)
    assert result.error == f"http://127.0.0.1:{listener.port} answered HTTP 500: boom"


def test_a_silent_receiver_times_out(listener: Listener) -> None:
    def stall(handler: _Handler) -> None:
        listener.release.wait(10)  # released by the fixture's teardown

    listener.answer = stall
    result = Webhook(f"http://127.0.0.1:{listener.port}/", allow=["127.0.0.1"], timeout_s=0.2).post({})
    assert not result.ok
    assert result.status is None
    assert result.error is not None
    assert "timed out" in result.error
    listener.release.set()


def test_a_closed_port_is_a_failed_result() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = Webhook(f"http://127.0.0.1:{port}/", allow=["127.0.0.1"]).post({})
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith(f"http://127.0.0.1:{port}: ")


def test_a_name_that_does_not_resolve_is_a_failed_result(resolver: Callable[..., list[str]]) -> None:
    resolver({})
    result = Webhook("http://nowhere.test/").post({})
    assert result.error is not None
    assert result.error.startswith("cannot resolve nowhere.test")


def test_a_name_without_addresses_is_a_failed_result(resolver: Callable[..., list[str]]) -> None:
    resolver({"empty.test": []})
    hook = Webhook("http://empty.test/")
    assert hook.post({}).error == "cannot resolve empty.test: empty.test resolves to no IPv4 or IPv6 address"
    with pytest.raises(OSError, match="resolves to no IPv4 or IPv6 address"):
        hook.resolve()


def test_resolve_checks_any_url(resolver: Callable[..., list[str]], connects: list[tuple[str, int]]) -> None:
    resolver({"public.test": ["8.8.8.8"], "internal.example": ["10.0.0.5"]})
    hook = Webhook("http://public.test:8080/")
    assert hook.resolve() == [(socket.AF_INET, ("8.8.8.8", 8080))]  # resolution only, no connect
    with pytest.raises(WebhookRefused, match="private"):
        hook.resolve("http://internal.example/")
    assert connects == []


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_https_sends_the_name_as_sni_and_verifies_it(
        tmp_path: Path, make_listener: Callable[..., Listener], resolver: Callable[..., list[str]]) -> None:
    cert, key = _self_signed(tmp_path, "hooks.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    sni: list[str | None] = []

    def record_sni(sock: Any, name: str | None, context: Any) -> None:
        sni.append(name)

    server_tls.sni_callback = record_sni
    listener = make_listener("127.0.0.1", tls=server_tls)
    looked_up = resolver({"hooks.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    trust = ssl.create_default_context(cafile=str(cert))
    hook = Webhook(f"https://hooks.test:{listener.port}/h", allow=["127.0.0.1"], ssl_context=trust)
    result = hook.post({"a": 1})
    assert result.ok, result.error
    assert sni == ["hooks.test"]
    assert looked_up == ["hooks.test"]
    assert listener.requests[0]["headers"]["Host"] == f"hooks.test:{listener.port}"
    # the certificate is checked against the URL's name, not the address connected to
    other = Webhook(f"https://other.test:{listener.port}/h", allow=["127.0.0.1"], ssl_context=trust).post({})
    assert not other.ok
    assert other.error is not None
    assert "certificate verify failed" in other.error
    assert len(listener.requests) == 1


def test_a_large_response_body_is_cut(listener: Listener) -> None:
    listener.answer = lambda h: h.reply(200, b"x" * (2 * 1024 * 1024))
    assert Webhook(f"http://127.0.0.1:{listener.port}/", allow=["127.0.0.1"]).post({}).ok


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"url": "http://user:pw@example.com/"}, "must not carry credentials"),
    ({"url": "http://example.com:99999/"}, "malformed: Port out of range"),
    ({"url": "http://[::1/"}, "malformed: Invalid IPv6 URL"),
    ({"url": "http://exa mple.com/"}, "spaces or control characters"),
    ({"url": "http:///path"}, "has no host"),
    ({"url": "http://bad_host!.com/"}, "not a valid host name"),
    ({"url": ""}, "non-empty string"),
    ({"url": "http://example.com/", "timeout_s": 0}, "timeout_s must be"),
    ({"url": "http://example.com/", "max_redirects": -1}, "max_redirects must be"),
    ({"url": "http://example.com/", "headers": {"Host": "x"}}, "set by the sender"),
    ({"url": "http://example.com/", "headers": {"X-A": "a\r\nX-B: b"}}, "without line breaks"),
    ({"url": "http://example.com/", "headers": {"X-A": "\u00e9t\u00e9"}}, "an ASCII string"),
    ({"url": "http://example.com/", "headers": {"bad name": "a"}}, "not a valid HTTP header name"),
    ({"url": "http://example.com/", "allow": "127.0.0.1"}, "not one string"),
    ({"url": "http://example.com/", "allow": ["not a host!"]}, "neither a host name"),
    ({"url": "http://example.com/", "secret": ""}, "secret must be a non-empty string"),
    ({"url": "http://" + "\u00fc" * 70 + ".example/"}, "not a valid host name"),
    ({"url": "http://example.com/", "allow": [""]}, "non-empty strings"),
    ({"url": "http://example.com/", "allow": [7]}, "non-empty strings"),
])
def test_bad_configuration_is_refused_naming_the_problem(kwargs: dict[str, Any], message: str) -> None:
    url = kwargs.pop("url")
    with pytest.raises(InvalidArgument, match=message):
        Webhook(url, **kwargs)


def test_payload_must_be_json() -> None:
    hook = Webhook("http://example.com/")
    with pytest.raises(InvalidArgument, match="not JSON-serialisable"):
        hook.post({"value": float("nan")})
    with pytest.raises(InvalidArgument, match="not JSON-serialisable"):
        hook.post({"value": object()})


def test_repr_and_origin_hide_the_path_and_secret() -> None:
    hook = Webhook("https://hooks.example.com/services/T0/B0/SECRETTOKEN", secret="hunter2")
    assert hook.origin == "https://hooks.example.com"
    assert "SECRETTOKEN" not in repr(hook)
    assert "hunter2" not in repr(hook)


def test_parse_webhooks_reads_the_secret_from_the_environment() -> None:
    hooks = parse_webhooks({"ops": {"url": "http://example.com/h", "secret_env": "HOOK_SECRET",
                                    "allow": ["10.0.0.0/8"], "timeout_s": 2}},
                           environ={"HOOK_SECRET": "k"})
    assert hooks["ops"].signature(b"{}") == _signature("k", b"{}")
    assert hooks["ops"].timeout_s == 2.0


@pytest.mark.parametrize(("spec", "message"), [
    ({"ops": {"allow": []}}, "webhook 'ops': missing key 'url'"),
    ({"ops": {"url": "http://example.com/", "colour": 1}}, "webhook 'ops': unknown key 'colour'"),
    ({"ops": {"url": "http://example.com/", "secret_env": "NOPE"}}, "'NOPE', which is not set"),
    ({"ops": {"url": "http://example.com/", "timeout_s": -1}}, "webhook 'ops': webhook timeout_s"),
    ({"ops": "http://example.com/"}, "must be a mapping"),
    ({"ops": {"url": "ftp://example.com/"}}, "only http and https"),
])
def test_parse_webhooks_names_the_bad_entry(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_webhooks(spec, environ={})
