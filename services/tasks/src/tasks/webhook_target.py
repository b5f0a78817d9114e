"""Webhook targets: a URL judged as it will be sent, resolved once, every address checked.

The URL is parsed by the HTTP client the sender uses (httpx), so whatever it would refuse
at send time is refused at CreateTask instead. A host name must also be a DNS name in its
ASCII (IDNA) form: labels of 1 to 63 letters, digits, `-` or `_`, at most 253 characters in
all, and every `xn--` label a valid A-label.

At delivery time the sender resolves the name once (`checked_addresses`), refuses the target
if any address is not public (an IPv6 address that carries an IPv4 one, such as
`::ffff:127.0.0.1`, `64:ff9b::7f00:1`, `2002:7f00:1::` or `::7f00:1`, is judged as that IPv4
address) and connects only to addresses it checked, so a second lookup cannot lead
elsewhere (DNS rebinding). A failed lookup is a failed attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Awaitable, Callable

import httpx
import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""Looks up a host name (ASCII) for a port; raises OSError when the lookup fails."""

_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_MAX_NAME_LEN = 253
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class TargetError(Exception):
    """A webhook target that cannot be used; the message says why (safe to record)."""


class LookupFailed(TargetError):
    """The name did not resolve now; a later attempt may succeed."""


class Refused(TargetError):
    """The target is not allowed (a private, loopback or otherwise non-public address)."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A webhook URL as the sender will use it."""

    url: httpx.URL
    host: str
    """The host in ASCII: an IDNA A-label name without a trailing dot, or an IP literal."""
    port: int
    literal: IPAddress | None
    """The address when the host is an IP literal."""

    @property
    def host_header(self) -> str:
        """The Host header the original URL would send."""
        return self.url.netloc.decode("ascii")


def parse(url: str) -> Target:
    """`url` as the sender will send it; raises TargetError saying what is wrong."""
    _check_parts(url)
    try:
        parsed = httpx.URL(url)
        raw_host = parsed.raw_host.decode("ascii")
        port = parsed.port
    except (httpx.InvalidURL, idna.IDNAError, UnicodeError, ValueError) as exc:
        raise TargetError("is not a valid URL") from exc
    if not parsed.is_absolute_url or not raw_host:
        raise TargetError("is not a valid URL")
    literal = _ip_literal(raw_host)
    host = raw_host.lower().removesuffix(".")
    if literal is None:
        problem = _name_problem(host)
        if problem is not None:
            raise TargetError(problem)
    default_port = 443 if parsed.scheme == "https" else 80
    return Target(url=parsed, host=host, port=port or default_port, literal=literal)


def _check_parts(url: str) -> None:
    """The plain checks first, each with its own message: scheme, port, host."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed `[` around an IPv6 host
        raise TargetError("is not a valid URL") from exc
    if parts.scheme not in ("http", "https"):
        raise TargetError("must be an absolute http or https URL")
    try:
        parts.port  # noqa: B018 -- reading it is what validates the port
    except ValueError as exc:
        raise TargetError("has an invalid port") from exc
    # A trailing dot marks a fully qualified name; `localhost.` is still localhost.
    if not (parts.hostname or "").removesuffix("."):
        raise TargetError("must have a host")


def _name_problem(host: str) -> str | None:
    if len(host) > _MAX_NAME_LEN:
        return f"has a host name longer than {_MAX_NAME_LEN} characters"
    for label in host.split("."):
        if not _LABEL.fullmatch(label):
            return (
                "has a host name that is not a valid DNS name "
                "(labels of 1-63 letters, digits, '-' or '_')"
            )
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                return "has a host name with an invalid internationalized (xn--) label"
    return None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # The C resolver also reads legacy IPv4 forms such as `127.1`, `0x7f.0.0.1` or
    # `2130706433`; judge them as the address they reach.
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return None


def url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why `url` cannot be a webhook target, or None when it can (checked at CreateTask).

    Only the URL itself is judged: a name that resolves to a private address passes here
    and is refused by the sender, which resolves it at delivery time.
    """
    try:
        target = parse(url)
    except TargetError as exc:
        return str(exc)
    return None if allow_private else host_refusal(target)


def host_refusal(target: Target) -> str | None:
    """Why the URL's own host may not be called (a localhost name or a non-public IP
    literal), or None."""
    if target.host == "localhost" or target.host.endswith(".localhost"):
        return "must not point at localhost"
    return None if target.literal is None else address_refusal(target.literal)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches through, if it carries one: mapped
    (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`), 6to4 (`2002::/16`),
    Teredo (`2001::/32`, its client) or the deprecated IPv4-compatible form (`::a.b.c.d`)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in network for network in _NAT64):
        return low32
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: nor ::1
        return low32
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why a webhook may not be delivered to `address`, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        address = embedded_ipv4(address) or address
    if address.is_unspecified:
        return "must not point at an unspecified address"
    if address.is_loopback:
        return "must not point at a loopback address"
    if address.is_link_local:
        return "must not point at a link-local address"
    if address.is_private:
        return "must not point at a private address"
    if address.is_multicast or not address.is_global:
        return "must point at a public address"
    return None


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses the system resolver gives for `host` (raises OSError on failure)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for info in infos:
        # An IPv6 link-local answer may carry a zone (`fe80::1%eth0`); the check ignores it.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def checked_addresses(
    target: Target, resolve: Resolver, *, allow_private: bool
) -> list[IPAddress]:
    """The addresses the sender may connect to, in the resolver's order: the literal, or
    every address of one lookup once each of them passed the check. Raises LookupFailed
    or Refused."""
    if not allow_private:
        refusal = host_refusal(target)
        if refusal is not None:
            raise Refused(refusal)
    if target.literal is not None:
        return [target.literal]
    try:
        addresses = await resolve(target.host, target.port)
    except (OSError, UnicodeError, ValueError) as exc:
        raise LookupFailed(f"lookup failed: {type(exc).__name__}") from exc
    if not addresses:
        raise LookupFailed("lookup failed: no address")
    if not allow_private:
        for address in addresses:
            refusal = address_refusal(address)
            if refusal is not None:
                raise Refused(refusal)
    return addresses


def pinned_url(target: Target, address: IPAddress) -> httpx.URL:
    """The target's URL with its host replaced by `address`, the address to connect to."""
    host = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    return target.url.copy_with(host=host)
