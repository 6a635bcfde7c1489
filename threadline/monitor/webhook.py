"""Webhooks: JSON POSTs from the server to a URL an operator configured, behind an address guard.

A webhook URL is data, and the server that sends it sits inside the operator's network, so
a careless sender is a server-side request forgery (SSRF) tool: point the URL at
`http://169.254.169.254/` and the cloud's credentials come back in an error message. The
guard (RELIABILITY.md, "Server-side fetches"):

- only `http` and `https`; no credentials in the URL, no proxy from the environment;
- the host is resolved once per hop and EVERY address it resolves to is classified
  (`classify`); one loopback, link-local, private, metadata, multicast or reserved address
  refuses the whole hop, unless the operator's allowlist names the host or the address;
- the connection goes to an address that was checked, never to a fresh resolution of the
  name (a rebinding DNS server cannot swap answers between check and connect); the name is
  still sent as `Host` and as TLS SNI, and certificates are verified against it;
- redirects are never followed by a library: each `Location` is parsed, resolved and checked
  like the first URL, up to `max_redirects`;
- at most `MAX_BODY` bytes of a response are read.

Example:
    >>> hook = Webhook("https://hooks.example.com/T0/B0", secret="s3cret")  # doctest: +SKIP
    >>> hook.post({"event": "firing"}).ok                                    # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: bytes of a response body read at most; the rest is dropped with the connection
MAX_BODY = 64 * 1024
#: the header carrying `sha256=<hex HMAC-SHA256 of the body>` when the webhook has a secret
SIGNATURE_HEADER = "X-Threadline-Signature"
USER_AGENT = "threadline-webhook/1"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_monotonic = time.monotonic  # a seam: tests move time without sleeping

# Cloud instance-metadata endpoints: they hand out credentials to whoever asks from inside
# the machine. Most sit in ranges refused anyway (link-local, private, CGNAT); they are named
# so that the refusal says "metadata", and so that a wide allowlist entry (a CIDR) never
# opens them: only an entry naming the exact address or host does.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean, OpenStack, Hetzner
    "169.254.170.2",    # AWS ECS task metadata and credentials
    "169.254.170.23",   # AWS EKS pod identity agent
    "169.254.0.23",     # Tencent Cloud
    "169.254.42.42",    # Scaleway
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",      # Oracle Cloud (classic)
    "168.63.129.16",    # Azure WireServer: a public address that only answers from inside Azure
    "fd00:ec2::254",    # AWS, over IPv6
    "fd00:ec2::23",     # AWS EKS pod identity agent, over IPv6
    "fd20:ce::254",     # GCP, over IPv6
))

_UNSPECIFIED_V4 = ipaddress.ip_network("0.0.0.0/8")  # "this network": 0.x connects to the host
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_PRIVATE: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
    "fc00::/7",                                       # unique local
    "fec0::/10",                                      # site-local (deprecated, still routable inside)
))
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# dropped when a redirect leaves the configured origin, so a token meant for one service is
# never handed to another (as requests and curl do)
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


class WebhookRefused(InvalidArgument):
    """The guard refused a webhook URL, its address or a redirect.

    Attributes:
        reason: `loopback`, `link-local`, `private`, `metadata`, `multicast`, `reserved`,
            `unspecified`, `cgnat`, `scheme`, `downgrade` or `redirect`.
        address: the refused IP address (None when the refusal is not about an address).
        host: the host name of the refused hop.
    """

    def __init__(self, message: str, *, reason: str, address: str | None = None,
                 host: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.address = address
        self.host = host


@dataclass(frozen=True)
class WebhookResult:
    """The outcome of one delivery.

    Attributes:
        status: the final HTTP status (None when no response came).
        error: why the delivery failed (None when it succeeded).
        redirects: how many redirects were followed.
    """

    status: int | None
    error: str | None = None
    redirects: int = 0

    @property
    def ok(self) -> bool:
        """True when the receiver answered 2xx."""
        return self.error is None and self.status is not None and 200 <= self.status < 300

    def to_dict(self) -> dict[str, Any]:
        """JSON form (stored in an alert's metadata)."""
        return {"ok": self.ok, "status": self.status, "error": self.error, "redirects": self.redirects}


# ---------------------------------------------------------------------------- classification


def _parse_ip(address: str | IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return address
    text = address.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text.split("%")[0])  # a zone (fe80::1%eth0) changes no verdict
    except ValueError as exc:
        raise InvalidArgument(f"{address!r} is not an IP address") from exc


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries traffic to, where the mapping is standard."""
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d: the socket layer connects to a.b.c.d
        return ip.ipv4_mapped
    if ip.sixtofour is not None:  # 2002:aabb:ccdd::/48
        return ip.sixtofour
    if ip.teredo is not None:  # 2001:0::/32, (server, client)
        return ip.teredo[1]
    if any(ip in net for net in _NAT64) or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def classify(address: str | IPAddress) -> str | None:
    """Why a webhook may not connect to `address`, or None when it is a public address.

    IPv6 forms that carry IPv4 traffic (mapped `::ffff:a.b.c.d`, 6to4, Teredo, NAT64 and the
    deprecated IPv4-compatible form) are judged by the IPv4 address inside them. Anything
    the `ipaddress` module does not consider globally routable is refused (fail closed).

    Returns:
        `unspecified`, `metadata`, `loopback`, `link-local`, `cgnat`, `multicast`,
        `private`, `reserved`, or None.

    Raises:
        InvalidArgument: `address` is not an IP address.
    """
    ip = _parse_ip(address)
    if isinstance(ip, ipaddress.IPv6Address):
        ip = (ip.scope_id and ipaddress.IPv6Address(ip.compressed.split("%")[0])) or ip
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = classify(inner)
            tunnelled = ip.ipv4_mapped is None and not any(ip in net for net in _NAT64)
            # a Teredo or ::/96 address of a public host is still not a plain public address
            return reason or ("reserved" if tunnelled and ip.sixtofour is None else None)
    if ip.is_unspecified or ip in _UNSPECIFIED_V4:
        return "unspecified"
    if ip in METADATA_ADDRESSES:
        return "metadata"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip in _CGNAT:
        return "cgnat"
    if ip.is_multicast:
        return "multicast"
    if any(ip in net for net in _PRIVATE):
        return "private"
    if ip.is_reserved or ip.is_private or not ip.is_global:
        return "reserved"  # documentation, benchmarking, protocol assignments, 240/4, broadcast
    return None


# ---------------------------------------------------------------------------- URLs and allowlist


@dataclass(frozen=True)
class _Url:
    scheme: str
    host: str  # lowercase ASCII (IDNA), no brackets, no trailing dot
    port: int
    path: str  # path and query, as sent in the request line

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")


def _normalise_host(host: str) -> str:
    host = host.rstrip(".").lower()
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:
        raise InvalidArgument(f"webhook host {host!r} is not a valid host name") from exc
    return ascii_host


def _parse_url(url: str) -> _Url:
    """Split and check a webhook URL (the first one or a redirect's)."""
    if not isinstance(url, str) or not url:
        raise InvalidArgument("webhook url must be a non-empty string like 'https://hooks.example.com/x'")
    if any(c in url for c in "\r\n\t\x00 "):
        raise InvalidArgument("webhook url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port
    except ValueError as exc:  # bad brackets, a port out of range, NFKC tricks in the netloc
        raise InvalidArgument(f"webhook url is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise WebhookRefused(f"webhook url scheme {parts.scheme or '(none)'!r} refused: only http and "
                             "https are allowed", reason="scheme")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument("webhook url must not carry credentials (user:password@); send a token "
                              "in the webhook's headers instead")
    if not hostname:
        raise InvalidArgument(f"webhook url {scheme}://... has no host")
    host = _normalise_host(hostname)
    if ":" in host:
        _parse_ip(host)  # a bracketed IPv6 literal must be one
    elif not _HOSTNAME.match(host):
        raise InvalidArgument(f"webhook host {host!r} is not a valid host name")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    # the request line is ASCII: percent-encode the rest, leave existing escapes alone
    path = quote(path, safe="!#$%&'()*+,/:;=?@[]~")
    return _Url(scheme, host, port if port is not None else (443 if scheme == "https" else 80), path)


class _Allowlist:
    """Operator-approved exceptions: host names, addresses and CIDR ranges."""

    def __init__(self, entries: Sequence[str]) -> None:
        if isinstance(entries, str):
            raise InvalidArgument("webhook allow must be a list of hosts, addresses or CIDR ranges, "
                                  "not one string")
        self.names: set[str] = set()
        self.addresses: set[IPAddress] = set()
        self.networks: list[IPNetwork] = []
        for entry in entries:
            if not isinstance(entry, str) or not entry.strip():
                raise InvalidArgument(f"webhook allow entries must be non-empty strings, not {entry!r}")
            text = entry.strip()
            if text.startswith("[") and text.endswith("]"):
                text = text[1:-1]
            try:
                if "/" in text:
                    self.networks.append(ipaddress.ip_network(text, strict=False))
                else:
                    self.addresses.add(_unmap(ipaddress.ip_address(text)))
                continue
            except ValueError:
                pass
            name = _normalise_host(text)
            if not _HOSTNAME.match(name):
                raise InvalidArgument(f"webhook allow entry {entry!r} is neither a host name, an IP "
                                      "address nor a CIDR range")
            self.names.add(name)

    def permits(self, host: str, ip: IPAddress, reason: str) -> bool:
        ip = _unmap(ip)
        if ip in self.addresses:
            return True
        # Neither a range nor a host name opens a metadata endpoint: that takes naming the
        # address itself. An allowed internal name that suddenly resolves there is an attack
        # (a poisoned or rebound DNS record), never a place to send alerts.
        if reason == "metadata":
            return False
        return host in self.names or any(ip in net for net in self.networks)


def _unmap(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


# ---------------------------------------------------------------------------- connections


def _connect(sockaddrs: Sequence[tuple[int, tuple[Any, ...]]], timeout: float) -> socket.socket:
    """A TCP connection to the first of the checked addresses that answers."""
    last: OSError = OSError("no address to connect to")
    for family, sockaddr in sockaddrs:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to already-checked addresses: `host` is only the Host header."""

    def __init__(self, url: _Url, sockaddrs: Sequence[tuple[int, tuple[Any, ...]]],
                 timeout: float) -> None:
        super().__init__(url.host, url.port, timeout=timeout)
        self._sockaddrs = sockaddrs

    def connect(self) -> None:
        self.sock = _connect(self._sockaddrs, self.timeout if self.timeout is not None else 5.0)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """TLS over a pinned connection; SNI and certificate checks use the URL's host name."""

    def __init__(self, url: _Url, sockaddrs: Sequence[tuple[int, tuple[Any, ...]]],
                 timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(url, sockaddrs, timeout)
        self._context = context

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


# ---------------------------------------------------------------------------- the webhook


class Webhook:
    """A guarded JSON POST target.

    Args:
        url: `http://` or `https://` URL; the path and query may carry a token (they are
            never logged: messages show the origin only).
        allow: host names, IP addresses or CIDR ranges the operator allows although they
            are not public (`["127.0.0.1"]`, `["alerts.corp.internal"]`, `["10.2.0.0/16"]`).
            A metadata address is opened only by naming that address exactly.
        timeout_s: connect and read timeout of each hop.
        max_redirects: redirects followed at most; each is checked like the first URL.
        headers: extra request headers (a bearer token, say); credential headers are dropped
            when a redirect leaves the configured origin.
        secret: when set, `X-Threadline-Signature: sha256=<hex>` carries the HMAC-SHA256 of
            the body, so the receiver can check the sender.
        ssl_context: TLS settings for https (default: the system's trust store, verified).

    Raises:
        InvalidArgument: the URL, an allowlist entry, a header or a number is malformed.
        WebhookRefused: the URL's scheme is not http or https.
    """

    def __init__(self, url: str, *, allow: Sequence[str] = (), timeout_s: float = 5.0,
                 max_redirects: int = 3, headers: Mapping[str, str] | None = None,
                 secret: str | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self._url = _parse_url(url)
        self.url = url
        self.allow = _Allowlist(allow)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not 0 < timeout_s <= 300:
            raise InvalidArgument("webhook timeout_s must be a number of seconds in (0, 300], "
                                  f"not {timeout_s!r}")
        if type(max_redirects) is not int or not 0 <= max_redirects <= 10:
            raise InvalidArgument("webhook max_redirects must be an integer from 0 to 10, "
                                  f"not {max_redirects!r}")
        self.timeout_s = float(timeout_s)
        self.max_redirects = max_redirects
        self.headers = _check_headers(headers or {})
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise InvalidArgument("webhook secret must be a non-empty string")
        self._secret = secret
        self._ssl_context = ssl_context

    @property
    def origin(self) -> str:
        """`scheme://host[:port]`: how the webhook is named in logs and errors (no path, no token)."""
        return self._url.origin

    def __repr__(self) -> str:
        return f"Webhook({self.origin}/...)"

    # ------------------------------------------------------------------ the guard
    def resolve(self, url: str | None = None) -> list[tuple[int, tuple[Any, ...]]]:
        """Resolve a URL's host and check every address; return the socket addresses to use.

        Raises:
            WebhookRefused: an address is not public and the allowlist does not name it.
            OSError: the host does not resolve (`socket.gaierror`).
        """
        target = _parse_url(url) if url is not None else self._url
        return self._check(target)

    def _check(self, target: _Url) -> list[tuple[int, tuple[Any, ...]]]:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        checked: list[tuple[int, tuple[Any, ...]]] = []
        for family, _type, _proto, _canon, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = str(sockaddr[0]).split("%")[0]
            ip = ipaddress.ip_address(address)
            reason = classify(ip)
            if reason is not None and not self.allow.permits(target.host, ip, reason):
                shown = target.host if target.host == address else f"{target.host} ({address})"
                raise WebhookRefused(
                    f"webhook to {shown} refused: {reason} address; add {address!r} (or the host) "
                    "to the webhook's allow list if it is intended",
                    reason=reason, address=address, host=target.host)
            if (family, sockaddr) not in checked:
                checked.append((family, sockaddr))
        if not checked:
            raise OSError(f"{target.host} resolves to no IPv4 or IPv6 address")
        return checked

    # ------------------------------------------------------------------ delivery
    def body(self, payload: Mapping[str, Any]) -> bytes:
        """The exact bytes `post` sends (and signs) for `payload`."""
        try:
            return json.dumps(dict(payload), separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"webhook payload is not JSON-serialisable: {exc}") from exc

    def signature(self, body: bytes) -> str | None:
        """`sha256=<hex>` of `body` under the secret, or None without a secret."""
        if self._secret is None:
            return None
        return "sha256=" + hmac.new(self._secret.encode(), body, hashlib.sha256).hexdigest()

    def post(self, payload: Mapping[str, Any]) -> WebhookResult:
        """POST `payload` as JSON; follow redirects through the guard.

        Every redirect (301, 302, 303, 307, 308) re-sends the same POST: a webhook turned
        into a bodyless GET would deliver nothing. An https URL never redirects to http.

        Returns:
            The outcome; a network failure, a timeout or a non-2xx answer is a result with
            `error` set, not an exception (delivery problems are expected and reported).

        Raises:
            WebhookRefused: the guard refused the URL or a redirect; nothing was sent there.
            InvalidArgument: `payload` is not JSON-serialisable.
        """
        body = self.body(payload)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "Connection": "close", **self.headers}
        sig = self.signature(body)
        if sig is not None:
            headers[SIGNATURE_HEADER] = sig
        started = _monotonic()
        target = self._url
        for hop in range(self.max_redirects + 1):
            if hop and _monotonic() - started > self.timeout_s:
                return WebhookResult(None, f"timed out after {hop} redirect(s)", hop)
            try:
                sockaddrs = self._check(target)  # WebhookRefused propagates: nothing was sent
            except OSError as exc:
                return WebhookResult(None, f"cannot resolve {target.host}: {exc}", hop)
            try:
                status, location, text = self._send(target, sockaddrs, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                detail = str(exc) or type(exc).__name__
                return WebhookResult(None, f"{target.origin}: {detail}", hop)
            if status in REDIRECT_STATUSES and location:
                if hop == self.max_redirects:
                    return WebhookResult(status, f"too many redirects (more than {self.max_redirects})", hop)
                target = self._next(target, location, headers)
                continue
            if 200 <= status < 300:
                return WebhookResult(status, None, hop)
            return WebhookResult(status, f"{target.origin} answered HTTP {status}: {text}", hop)
        raise AssertionError("unreachable")  # pragma: no cover

    def _next(self, current: _Url, location: str, headers: dict[str, str]) -> _Url:
        try:
            nxt = _parse_url(urljoin(f"{current.origin}{current.path}", location))
        except WebhookRefused:
            raise
        except ValueError as exc:  # InvalidArgument from the checks, ValueError from urljoin
            raise WebhookRefused(f"webhook redirect from {current.origin} refused: bad Location: {exc}",
                                 reason="redirect", host=current.host) from exc
        if current.scheme == "https" and nxt.scheme == "http":
            raise WebhookRefused(f"webhook redirect from {current.origin} to {nxt.origin} refused: "
                                 "https must not downgrade to http", reason="downgrade", host=nxt.host)
        if nxt.origin != self._url.origin:
            for name in [n for n in headers if n.lower() in _CREDENTIAL_HEADERS]:
                del headers[name]
        return nxt

    def _send(self, target: _Url, sockaddrs: Sequence[tuple[int, tuple[Any, ...]]], body: bytes,
              headers: Mapping[str, str]) -> tuple[int, str | None, str]:
        conn: _PinnedHTTPConnection
        if target.scheme == "https":
            context = self._ssl_context or ssl.create_default_context()
            conn = _PinnedHTTPSConnection(target, sockaddrs, self.timeout_s, context)
        else:
            conn = _PinnedHTTPConnection(target, sockaddrs, self.timeout_s)
        try:
            conn.request("POST", target.path, body=body, headers=dict(headers))
            response = conn.getresponse()
            data = response.read(MAX_BODY)
            location = response.getheader("Location")
            text = "".join(c if c.isprintable() else " " for c in data[:200].decode("utf-8", "replace"))
            return response.status, location, text.strip()
        finally:
            conn.close()


def _check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise InvalidArgument(f"webhook header name {name!r} is not a valid HTTP header name")
        if name.lower() in _RESERVED_HEADERS:
            raise InvalidArgument(f"webhook header {name!r} is set by the sender and cannot be configured")
        if not isinstance(value, str) or not value.isascii() or any(c in value for c in "\r\n\x00"):
            raise InvalidArgument(f"webhook header {name!r} must be an ASCII string without line breaks")
        checked[name] = value
    return checked


_WEBHOOK_KEYS = frozenset({"url", "allow", "timeout_s", "max_redirects", "headers", "secret", "secret_env"})


def parse_webhooks(specs: Mapping[str, Mapping[str, Any]],
                   environ: Mapping[str, str] | None = None) -> dict[str, Webhook]:
    """Named webhooks from a policy's `webhooks:` mapping.

    Each entry takes `url` and optionally `allow`, `timeout_s`, `max_redirects`, `headers`,
    and the signing secret as `secret_env` (the name of an environment variable read now,
    so the secret stays out of the stored policy) or `secret`.

    Raises:
        InvalidArgument: an entry is malformed; the message names the webhook and the key.
    """
    env = os.environ if environ is None else environ
    hooks: dict[str, Webhook] = {}
    for name, spec in specs.items():
        where = f"webhook {name!r}"
        if not isinstance(spec, dict):
            raise InvalidArgument(f"{where} must be a mapping with at least 'url'")
        unknown = sorted(set(spec) - _WEBHOOK_KEYS)
        if unknown:
            raise InvalidArgument(f"{where}: unknown key {unknown[0]!r}; "
                                  f"expected one of {sorted(_WEBHOOK_KEYS)}")
        if "url" not in spec:
            raise InvalidArgument(f"{where}: missing key 'url'")
        secret = spec.get("secret")
        if "secret_env" in spec:
            var = spec["secret_env"]
            if not isinstance(var, str) or var not in env:
                raise InvalidArgument(f"{where}: secret_env names {var!r}, which is not set in "
                                      "the environment")
            secret = env[var]
        try:
            hooks[name] = Webhook(spec["url"], allow=spec.get("allow") or (),
                                  timeout_s=spec.get("timeout_s", 5.0),
                                  max_redirects=spec.get("max_redirects", 3),
                                  headers=spec.get("headers"), secret=secret)
        except WebhookRefused:
            raise
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from exc
    return hooks
