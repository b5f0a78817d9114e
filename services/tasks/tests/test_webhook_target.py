"""Webhook targets: URLs judged as they will be sent, addresses judged with what they carry."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from tasks import webhook_target

UNSENDABLE = [
    ("http://\u2460.example/", "is not a valid URL"),  # a circled digit: no IDNA form
    ("http://xn--.example/", "invalid internationalized (xn--) label"),
    ("http://xn--zz-zz.example/", "invalid internationalized (xn--) label"),
    (f"http://{'a' * 64}.example/", "not a valid DNS name"),
    (f"http://{'a' * 60}.{'b' * 60}.{'c' * 60}.{'d' * 60}.{'e' * 60}.example/", "longer than 253"),
    ("http://a..b.example/", "not a valid DNS name"),
    ("http://a%41.example/", "not a valid DNS name"),
    ("http://[::1/", "is not a valid URL"),
    ("http://127.0.0.1\x00.example/", "is not a valid URL"),
    ("http://example.com:99999/", "has an invalid port"),
    ("ftp://example.com/", "must be an absolute http or https URL"),
    ("http:///hook", "must have a host"),
]


@pytest.mark.parametrize(("url", "problem"), UNSENDABLE)
def test_unsendable_urls_are_refused(url: str, problem: str) -> None:
    """A URL the HTTP client or a DNS resolver cannot use (no IDNA form, a malformed A-label,
    a label over 63 characters, a name over 253, an empty label, a bad port) is refused with
    a message saying why, whatever the private-address setting."""
    for allow_private in (True, False):
        found = webhook_target.url_problem(url, allow_private=allow_private)
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("url", "host", "header"),
    [
        ("https://b\u00fccher.example/hook", "xn--bcher-kva.example", "xn--bcher-kva.example"),
        (
            "https://xn--bcher-kva.example:8443/h",
            "xn--bcher-kva.example",
            "xn--bcher-kva.example:8443",
        ),
        ("http://Hooks.Example.COM./x?y=1", "hooks.example.com", "hooks.example.com."),
        (f"http://{'a' * 63}.example/", f"{'a' * 63}.example", f"{'a' * 63}.example"),
        ("http://under_score.example/", "under_score.example", "under_score.example"),
    ],
)
def test_sendable_urls_parse_to_their_ascii_host(url: str, host: str, header: str) -> None:
    """A sendable URL passes and parses to the ASCII host the sender looks up and the Host
    header it sends."""
    assert webhook_target.url_problem(url, allow_private=False) is None
    target = webhook_target.parse(url)
    assert (target.host, target.host_header) == (host, header)


EMBEDDED_LOOPBACK = [
    "::ffff:127.0.0.1",  # IPv4-mapped
    "64:ff9b::7f00:1",  # NAT64, well-known prefix
    "64:ff9b:1::7f00:1",  # NAT64, local-use prefix
    "2002:7f00:1::",  # 6to4
    "::7f00:1",  # IPv4-compatible (deprecated)
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (obfuscated)
]


@pytest.mark.parametrize("address", EMBEDDED_LOOPBACK)
def test_ipv6_forms_that_embed_ipv4_are_judged_as_that_ipv4(address: str) -> None:
    """An IPv6 address that reaches an IPv4 address is judged as that IPv4 address: each
    of these reaches 127.0.0.1 and is refused as loopback."""
    refusal = webhook_target.address_refusal(ipaddress.ip_address(address))
    assert refusal == "must not point at a loopback address"


@pytest.mark.parametrize("address", EMBEDDED_LOOPBACK)
def test_embedded_loopback_literals_refused_at_create(address: str) -> None:
    """The same addresses written as URL hosts are refused when checked for CreateTask."""
    problem = webhook_target.url_problem(f"http://[{address}]:8080/hook", allow_private=False)
    assert problem == "must not point at a loopback address"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "::1",
        "::ffff:10.0.0.1",
        "169.254.1.1",
        "fe80::2",
        "::",
        "64:ff9b::a00:1",
    ],
)
def test_address_refusal_for_resolved_addresses(address: str) -> None:
    """address_refusal, the sender's delivery-time check, refuses non-public addresses."""
    assert webhook_target.address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::"]
)
def test_address_refusal_accepts_public_addresses(address: str) -> None:
    """address_refusal lets public addresses through, also when an IPv6 address carries a
    public IPv4 one."""
    assert webhook_target.address_refusal(ipaddress.ip_address(address)) is None


class _Answers:
    """DNS answers a test chooses (name resolution is the third party here)."""

    def __init__(self, *answers: list[str] | OSError) -> None:
        self._answers = list(answers)
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[webhook_target.IPAddress]:
        answer = self._answers[min(self.calls, len(self._answers) - 1)]
        self.calls += 1
        if isinstance(answer, OSError):
            raise answer
        return [ipaddress.ip_address(a) for a in answer]


async def test_every_resolved_address_is_checked() -> None:
    """A name is refused when any one of its addresses is not public, even if the first
    one is."""
    target = webhook_target.parse("https://hook.example/x")
    answers = _Answers(["93.184.216.34", "127.0.0.1"])
    with pytest.raises(webhook_target.Refused, match="loopback"):
        await webhook_target.checked_addresses(target, answers, allow_private=False)


async def test_failed_lookup_is_a_lookup_failure() -> None:
    """A lookup that fails raises LookupFailed (never lets the target through)."""
    target = webhook_target.parse("https://hook.example/x")
    answers = _Answers(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    with pytest.raises(webhook_target.LookupFailed, match="gaierror"):
        await webhook_target.checked_addresses(target, answers, allow_private=False)


async def test_localhost_names_refused_before_lookup() -> None:
    """`localhost` names are refused without a lookup unless private targets are allowed."""
    target = webhook_target.parse("http://api.localhost./x")
    answers = _Answers(["93.184.216.34"])
    with pytest.raises(webhook_target.Refused, match="localhost"):
        await webhook_target.checked_addresses(target, answers, allow_private=False)
    assert answers.calls == 0
    assert await webhook_target.checked_addresses(target, answers, allow_private=True) == [
        ipaddress.ip_address("93.184.216.34")
    ]


def test_pinned_url_keeps_everything_but_the_host() -> None:
    """The URL the sender connects to is the original with only the host replaced by the
    checked address (bracketed for IPv6)."""
    target = webhook_target.parse("https://hook.example:8443/a/b?c=d")
    v6 = webhook_target.pinned_url(target, ipaddress.ip_address("2606:4700::1"))
    assert str(v6) == "https://[2606:4700::1]:8443/a/b?c=d"
    v4 = webhook_target.pinned_url(target, ipaddress.ip_address("93.184.216.34"))
    assert str(v4) == "https://93.184.216.34:8443/a/b?c=d"
