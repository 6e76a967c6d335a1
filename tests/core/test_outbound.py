"""The outbound guard (core.outbound) on its own: which addresses a policy refuses, the
save-time URL check, and the guarded client against a real server on loopback — allowed only
when the installation lists it, refused otherwise (a literal address, a name that resolves to
loopback, a redirect to loopback), the connection pinned to the checked address."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

import httpx
import pytest

from lovedcrm.config import Settings
from lovedcrm.core import outbound
from tests.fakes import FakeServer, RecordedRequest, Reply
from tests.fakes.dns import FakeDns


class Target(FakeServer):
    """Answers 200 ``ok``; ``/redirect?to=<url>`` answers 302 to that URL."""

    def handle(self, request: RecordedRequest) -> Reply:
        if request.path == "/redirect":
            return Reply(302, b"", "text/plain", headers={"Location": request.query["to"][0]})
        return Reply(200, b"ok", "text/plain")


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with Target() as server:
        yield server


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDns]:
    fake = FakeDns(monkeypatch)
    yield fake
    fake.release_all()


ALLOW_LOOPBACK = outbound.Policy.of(["127.0.0.1"])


def ip(text: str) -> outbound.IPAddress:
    return ipaddress.ip_address(text)


# --- the policy -------------------------------------------------------------------------------


def test_always_refused_whatever_is_allowed() -> None:
    everything = outbound.Policy.of(["0.0.0.0/0", "::/0", "metadata.internal"])
    for address, why in {
        "169.254.169.254": "link-local",
        "169.254.170.2": "link-local",
        "fe80::1": "link-local",
        "::ffff:169.254.169.254": "link-local",
        "100.100.100.200": "metadata",
        "192.0.0.192": "metadata",
        "fd00:ec2::254": "metadata",
        "0.0.0.0": "unspecified",  # noqa: S104 - classified, not bound
        "0.1.2.3": "unspecified",
        "::": "unspecified",
        "224.0.0.1": "multicast",
        "240.0.0.1": "reserved",
        "64:ff9b::a9fe:a9fe": "link-local",  # NAT64 of 169.254.169.254
    }.items():
        reason = everything.refusal(ip(address), "metadata.internal")
        assert reason is not None and why in reason and "never allowed" in reason, address


def test_loopback_and_private_need_the_installation() -> None:
    for address, why in {
        "127.0.0.1": "loopback",
        "::1": "loopback",
        "::ffff:127.0.0.1": "loopback",
        "10.1.2.3": "private",
        "192.168.0.10": "private",
        "fc00::1": "private",
        "100.64.0.1": "not a public",
        "64:ff9b::7f00:1": "loopback",  # NAT64 of 127.0.0.1
        "2002:7f00:1::": "loopback",  # 6to4 of 127.0.0.1
    }.items():
        reason = outbound.STRICT.refusal(ip(address))
        assert reason is not None and why in reason, (address, reason)
        assert outbound.ALLOW_SETTING in reason
    policy = outbound.Policy.of(["127.0.0.1", "10.0.0.0/8", "waha.internal"])
    assert policy.refusal(ip("127.0.0.1")) is None
    assert policy.refusal(ip("::ffff:127.0.0.1")) is None
    assert policy.refusal(ip("10.9.9.9")) is None
    assert policy.refusal(ip("127.0.0.2")) is not None  # only what is listed
    assert policy.refusal(ip("192.168.1.5"), "waha.internal") is None  # the name is allowed
    assert policy.refusal(ip("192.168.1.5"), "other.internal") is not None
    for public in ("93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946"):
        assert outbound.STRICT.refusal(ip(public)) is None


def test_settings_read_the_allow_list_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOVEDCRM_OUTBOUND_ALLOW", " waha.internal., 10.0.0.0/8 ,127.0.0.1")
    settings = Settings()
    assert settings.outbound_allow == ("waha.internal", "10.0.0.0/8", "127.0.0.1")
    policy = outbound.policy(settings)
    assert policy.refusal(ip("10.0.0.5")) is None and policy.allows_name("WAHA.internal")
    monkeypatch.setenv("LOVEDCRM_OUTBOUND_ALLOW", "not a host!")
    with pytest.raises(ValueError, match="OUTBOUND_ALLOW"):
        Settings()


def test_urls_refused_at_save_time() -> None:
    cases = {
        "ftp://example.com/": "invalid",
        "not a url": "invalid",
        "https://user:pass@example.com/": "invalid",
        "http://example.com:0/": "invalid",
        f"https://{'a' * 64}.example.com/": "invalid",
        "https://a..b/": "invalid",
        "http://127.0.0.1:3000/": "private",
        "http://127.1/": "private",
        "http://2130706433/": "private",
        "http://[::1]/": "private",
        "http://localhost:3000/": "private",
        "http://api.localhost/": "private",
        "http://10.0.0.5/": "private",
        "http://169.254.169.254/latest/meta-data/": "forbidden",
        "http://[fe80::1]/": "forbidden",
        "http://100.100.100.200/": "forbidden",
    }
    for url, kind in cases.items():
        with pytest.raises(outbound.UrlProblem) as caught:
            outbound.check_url(outbound.STRICT, url)
        assert caught.value.kind == kind, (url, caught.value.message)
    assert outbound.check_url(outbound.STRICT, " https://graph.facebook.com ") == (
        "https://graph.facebook.com"
    )
    # A name is only resolved (and checked) when called.
    assert outbound.check_url(outbound.STRICT, "http://waha:3000") == "http://waha:3000"
    allowed = outbound.Policy.of(["127.0.0.0/8", "10.0.0.0/8"])
    for url in ("http://127.0.0.1:3000/", "http://localhost:3000/", "http://10.0.0.5/"):
        assert outbound.check_url(allowed, url) == url
    with pytest.raises(outbound.UrlProblem) as caught:
        outbound.check_url(outbound.Policy.of(["169.254.0.0/16"]), "http://169.254.169.254/")
    assert caught.value.kind == "forbidden"


# --- the guarded client against a real server ----------------------------------------------------


async def test_allowed_loopback_is_reached(target: Target) -> None:
    async with outbound.client(ALLOW_LOOPBACK, timeout=5) as client:
        r = await client.get(f"{target.url}/hello")
    assert r.status_code == 200 and r.text == "ok"


async def test_loopback_refused_without_the_setting(target: Target, dns: FakeDns) -> None:
    """127.0.0.1, the metadata address and a name that resolves to loopback are refused
    before any connection, with the reason; the server never hears of them."""
    dns.answer("loopback.test", "127.0.0.1")
    dns.answer("metadata.test", "169.254.169.254")
    before = len(target.requests)
    async with outbound.client(outbound.STRICT, timeout=5) as client:
        for url, why in [
            (f"{target.url}/a", "127.0.0.1 is a loopback address"),
            (f"http://loopback.test:{target.port}/b", "127.0.0.1 is a loopback address"),
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("http://metadata.test/latest/meta-data/", "link-local"),
        ]:
            with pytest.raises(outbound.OutboundRefused) as caught:
                await client.get(url)
            assert str(caught.value).startswith("refused: ") and why in str(caught.value), url
    assert len(target.requests) == before
    # The metadata address stays refused where everything private is allowed.
    async with outbound.client(outbound.Policy.of(["0.0.0.0/0"]), timeout=5) as client:
        with pytest.raises(outbound.OutboundRefused, match="never allowed"):
            await client.get("http://metadata.test/")


async def test_connection_goes_to_the_checked_address(target: Target, dns: FakeDns) -> None:
    """Only our resolver knows ``pinned.test``: the request reached the server, so it went to
    the address that was checked, with the name in the Host header."""
    dns.answer("pinned.test", "127.0.0.1")
    policy = outbound.Policy.of(["pinned.test"])
    async with outbound.client(policy, timeout=5) as client:
        r = await client.get(f"http://pinned.test:{target.port}/pinned")
    assert r.status_code == 200
    [seen] = target.requests_to("/pinned")
    assert seen.headers["host"] == f"pinned.test:{target.port}"


async def test_a_redirect_to_loopback_is_refused(target: Target) -> None:
    """The server is allowed (127.0.0.1), the address it redirects to is not (127.0.0.2)."""
    elsewhere = f"http://127.0.0.2:{target.port}/inside"
    url = f"{target.url}/redirect?to={elsewhere}"
    async with outbound.client(ALLOW_LOOPBACK, timeout=5) as client:
        with pytest.raises(outbound.OutboundRefused) as caught:
            await client.get(url)
    message = str(caught.value)
    assert "redirecting to http://127.0.0.2" in message and "loopback" in message
    assert "redirects are not followed" in message
    # A client asked to follow redirects still checks every hop.
    async with outbound.client(ALLOW_LOOPBACK, timeout=5, refuse_redirects=False) as client:
        with pytest.raises(
            outbound.OutboundRefused, match=re.escape("127.0.0.2 is a loopback address")
        ):
            await client.get(url, follow_redirects=True)
    assert target.requests_to("/inside") == []


async def test_an_unresolvable_name_is_a_connection_error(dns: FakeDns) -> None:
    dns.answer("empty.test")
    async with outbound.client(outbound.STRICT, timeout=5) as client:
        with pytest.raises(httpx.ConnectError, match=re.escape("DNS resolution of empty.test")):
            await client.get("http://empty.test/")
        # A name the resolver cannot even encode (a label over 63 characters): the same.
        with pytest.raises(httpx.ConnectError, match="DNS resolution of"):
            await client.get(f"http://{'a' * 64}.test/")
