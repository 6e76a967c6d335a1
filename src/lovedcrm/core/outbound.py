"""One guard for every URL the server calls on someone's behalf: outgoing webhooks, WhatsApp
providers (a Graph API mirror, a WAHA bridge, the media URLs they hand out), and whatever
comes next (calendars, AI, ads).

- **At save time** ``check_url`` refuses what is wrong on its face: not http(s), a user name
  or password in it, a literal address or a ``localhost`` name the policy refuses.
- **At call time** every request of a ``client()`` goes through ``GuardedTransport``: the
  host is resolved off the event loop, in this module's own small thread pool (a slow or
  hung resolver never takes the threads that the database driver and ``asyncio.to_thread``
  use, so it cannot stall requests); every address is checked; the connection goes to the
  checked address, with the Host header and the TLS SNI of the name, so a second DNS answer
  cannot point it elsewhere (DNS rebinding). The client follows no redirect, and since each
  request is checked, no hop could reach a refused address anyway.
- **The policy**: link-local addresses, cloud metadata endpoints, unspecified, multicast and
  reserved addresses are always refused. Loopback, private and other non-public addresses are
  refused unless the installation lists them in ``LOVEDCRM_OUTBOUND_ALLOW`` (host names,
  addresses or networks: a self-hosted WAHA on ``10.0.0.5`` or ``waha.internal``).

A refusal raises ``OutboundRefused`` (an ``httpx.RequestError``, so adapters that catch
``httpx.HTTPError`` see it; they report it as permanent, with its reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal
from urllib.parse import urlsplit

import certifi
import httpx

from lovedcrm.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_SETTING = "LOVEDCRM_OUTBOUND_ALLOW"
DNS_TIMEOUT_SECONDS = 5.0
# Lookups run here, never in asyncio's default executor. Four threads: a hung resolver can
# hold them all (a thread in getaddrinfo cannot be cancelled); later outbound calls then wait
# and time out, and nothing else in the process does.
DNS_THREADS = 4
# A name with many addresses: try a few (the first that accepts the connection is used).
MAX_ADDRESSES = 4

# Cloud metadata and host-agent endpoints that are not link-local.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "168.63.129.16",  # Azure WireServer
        "fd00:ec2::254",  # AWS IPv6
        "fd20:ce::254",  # Google Cloud IPv6
    )
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# What ``webhooks_allow_private_targets`` opens for webhooks: every loopback and private network.
PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
    )
)


class OutboundRefused(httpx.RequestError):
    """The guard refused a call: the message says which address and why."""


class UrlProblem(ValueError):
    """A URL refused at save time. ``kind``: ``invalid`` (not a usable http(s) URL),
    ``private`` (a loopback or private address the installation has not allowed),
    ``forbidden`` (link-local, metadata…: never allowed)."""

    def __init__(self, kind: Literal["invalid", "private", "forbidden"], message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


# --- the policy -----------------------------------------------------------------------------


def _unmapped(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (NAT64, 6to4, Teredo), which a gateway may
    connect to."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def never_allowed(ip: IPAddress) -> str | None:
    """Why ``ip`` is refused whatever the installation allows (None: it is not)."""
    ip = _unmapped(ip)
    if ip.is_unspecified:
        return f"{ip} is an unspecified address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK:
        return f"{ip} is an unspecified ('this network') address"
    if ip.is_link_local:
        return f"{ip} is a link-local address (cloud metadata lives there)"
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip.is_reserved:
        return f"{ip} is a reserved address"
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        reason = never_allowed(embedded)
        if reason:
            return f"{ip} carries {embedded}: {reason}"
    return None


def restricted(ip: IPAddress) -> str | None:
    """Why ``ip`` needs the installation's permission (None: a public address)."""
    ip = _unmapped(ip)
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_private:
        return f"{ip} is a private address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        reason = restricted(embedded)
        if reason:
            return f"{ip} carries {embedded}: {reason}"
    return None


@dataclass(frozen=True)
class Policy:
    """Which non-public destinations this installation allows (never the always-refused)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, entries: Iterable[str]) -> Policy:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            text = entry.strip().lower().rstrip(".")
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                hosts.add(text)
        return cls(frozenset(hosts), tuple(networks))

    def with_private_networks(self) -> Policy:
        return Policy(self.hosts | {"localhost"}, self.networks + PRIVATE_NETWORKS)

    def allows_name(self, host: str) -> bool:
        return _name(host) in self.hosts

    def refusal(self, ip: IPAddress, host: str | None = None) -> str | None:
        """Why a call to ``ip`` (reached through ``host``) is refused; None: it may go."""
        never = never_allowed(ip)
        if never:
            return f"{never}; never allowed"
        reason = restricted(ip)
        if reason is None:
            return None
        plain = _unmapped(ip)
        if (host is not None and self.allows_name(host)) or any(
            plain in network for network in self.networks if plain.version == network.version
        ):
            return None
        return f"{reason}; allow it with {ALLOW_SETTING}"


STRICT = Policy()


def policy(settings: Settings) -> Policy:
    """The installation's policy (``outbound_allow``)."""
    return Policy.of(settings.outbound_allow)


# --- save time ----------------------------------------------------------------------------------

_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+")


def _name(host: str) -> str:
    return host.strip().lower().rstrip(".")


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, including the short and numeric IPv4 forms the system
    resolver accepts (``127.1``, ``2130706433``, ``0x7f.1``)."""
    host = _name(host).strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host) and any(ch.isdigit() for ch in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def is_local_name(host: str) -> bool:
    name = _name(host)
    return name == "localhost" or name.endswith(".localhost")


def check_url(rules: Policy, raw: str) -> str:
    """``raw`` stripped, if it is an absolute http(s) URL without credentials whose host is
    not refused on its face; raises ``UrlProblem``. Names are resolved (and checked again)
    only when called."""
    url = raw.strip()
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise UrlProblem("invalid", "The URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise UrlProblem("invalid", f"The URL is not valid: {exc}.") from exc
    host = _name(parts.hostname or "")
    if parts.scheme not in ("http", "https") or not host:
        raise UrlProblem("invalid", "The URL must be an absolute http(s) URL.")
    if parts.username is not None or parts.password is not None:
        raise UrlProblem("invalid", "The URL must not contain a user name or password.")
    if port == 0:
        raise UrlProblem("invalid", "The URL's port is not valid.")
    ip = literal_address(host)
    if ip is not None:
        never = never_allowed(ip)
        if never:
            raise UrlProblem("forbidden", f"{host} is refused: {never}; never allowed.")
        reason = rules.refusal(ip, host)
        if reason:
            raise UrlProblem("private", f"{host} is refused: {reason}.")
        return url
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise UrlProblem("invalid", f"The URL's host name is not valid: {exc}.") from exc
    if is_local_name(host) and not rules.allows_name(host):
        reason = rules.refusal(ipaddress.ip_address("127.0.0.1"), host)
        if reason:
            raise UrlProblem("private", f"{host} is a loopback name: {reason}.")
    return url


def loopback_allowed(rules: Policy, host: str) -> bool:
    """Whether ``host`` is a loopback name or address that the policy allows (plain http is
    acceptable there: the traffic never leaves the machine)."""
    ip = literal_address(host)
    if ip is None:
        return is_local_name(host) and (
            rules.allows_name(host) or rules.refusal(ipaddress.ip_address("127.0.0.1")) is None
        )
    return _unmapped(ip).is_loopback and rules.refusal(ip, host) is None


# --- call time ------------------------------------------------------------------------------

_resolver = ThreadPoolExecutor(max_workers=DNS_THREADS, thread_name_prefix="lovedcrm-dns")


async def resolve(host: str, port: int, *, within: float = DNS_TIMEOUT_SECONDS) -> list[IPAddress]:
    """The addresses of ``host`` (a literal address is its own answer). The system resolver
    runs in this module's threads; raises ``httpx.ConnectError`` when the name does not
    resolve in time."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()

    def lookup() -> list[Any]:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)

    try:
        async with asyncio.timeout(within):
            infos = await loop.run_in_executor(_resolver, lookup)
    except TimeoutError as exc:
        raise httpx.ConnectError(f"DNS resolution of {host} timed out after {within:g}s") from exc
    except (OSError, UnicodeError) as exc:  # UnicodeError: a label empty or over 63 chars
        raise httpx.ConnectError(f"DNS resolution of {host} failed: {exc}") from exc
    found: list[IPAddress] = []
    for info in infos:
        try:
            ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        except ValueError:
            continue
        if ip not in found:
            found.append(ip)
    if not found:
        raise httpx.ConnectError(f"DNS resolution of {host} returned no address")
    return found


@cache
def tls_context() -> ssl.SSLContext:
    """Certificate checks against certifi's bundle. Loading it costs ~20 ms of CPU: once per
    process, never once per call on the event loop."""
    return ssl.create_default_context(cafile=certifi.where())


class GuardedTransport(httpx.AsyncBaseTransport):
    """Resolves, checks and pins every request (see the module's docstring)."""

    def __init__(self, rules: Policy, *, dns_timeout: float = DNS_TIMEOUT_SECONDS) -> None:
        self.rules = rules
        self.dns_timeout = dns_timeout
        # One connection pool per host name: a TLS connection made for one name is never
        # reused for another that happens to share its address.
        self._pools: dict[str, httpx.AsyncHTTPTransport] = {}

    def _pool(self, host: str) -> httpx.AsyncHTTPTransport:
        pool = self._pools.get(host)
        if pool is None:
            pool = self._pools[host] = httpx.AsyncHTTPTransport(verify=tls_context())
        return pool

    async def checked_addresses(self, request: httpx.Request) -> list[IPAddress]:
        url = request.url
        host = url.raw_host.decode("ascii")  # IDNA names in their ASCII form
        if url.scheme not in ("http", "https") or not host:
            raise OutboundRefused(f"refused: {url} is not an http(s) URL", request=request)
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await resolve(host, port, within=self.dns_timeout)
        for ip in addresses:
            reason = self.rules.refusal(ip, host)
            if reason:
                raise OutboundRefused(
                    f"refused: {host} resolves to {ip} ({reason})", request=request
                )
        return addresses[:MAX_ADDRESSES]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        original = request.url
        host = original.raw_host.decode("ascii")
        addresses = await self.checked_addresses(request)
        if original.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        failure: httpx.TransportError | None = None
        try:
            for ip in addresses:
                # The Host header was set from the original URL when the request was built.
                request.url = original.copy_with(host=str(ip))
                try:
                    return await self._pool(host).handle_async_request(request)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    failure = exc  # nothing was sent: the next address may answer
        finally:
            request.url = original
        assert failure is not None
        raise failure

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


async def _refuse_redirect(response: httpx.Response) -> None:
    if not response.is_redirect:
        return
    location = response.headers.get("location", "")
    target = response.request.url
    with contextlib.suppress(httpx.InvalidURL):
        target = target.join(location)
    reason = "redirects are not followed"
    ip = literal_address(target.host) if target.host else None
    why = (never_allowed(ip) or restricted(ip)) if ip is not None else None
    if why:
        reason = f"{why}; {reason}"
    raise OutboundRefused(
        f"refused: {response.request.url.host} answered HTTP {response.status_code} "
        f"redirecting to {target} ({reason})",
        request=response.request,
    )


def client(
    rules: Policy,
    *,
    timeout: float | httpx.Timeout,
    refuse_redirects: bool = True,
    dns_timeout: float = DNS_TIMEOUT_SECONDS,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every request goes through the guard. It follows no
    redirect: with ``refuse_redirects`` a 3xx answer raises ``OutboundRefused`` (naming
    where it pointed); without, the 3xx is returned to the caller. No proxy from the
    environment."""
    hooks: dict[str, list[Any]] = {"response": [_refuse_redirect]} if refuse_redirects else {}
    return httpx.AsyncClient(
        transport=GuardedTransport(rules, dns_timeout=dns_timeout),
        timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        event_hooks=hooks,
    )
