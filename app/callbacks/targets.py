"""Which URLs Lethe may call back: the allow-list against server-side request forgery.

A target must be http(s) with a host. Every address the host resolves to must be public:
loopback, private, link-local (cloud metadata at 169.254.169.254), shared, multicast,
reserved and unspecified ranges are refused, in IPv4 and IPv6 (including IPv4-mapped and
6to4/Teredo forms), unless the host is listed in `LETHE_CALLBACK_ALLOWED_HOSTS` (host
names, addresses or CIDR ranges). Targets are checked when they are submitted and again
before every delivery attempt, because DNS answers can change in between, and the
delivery connects to the very address that check approved (`Checked.address`; the URL's
host still goes in `Host` and in TLS SNI and certificate verification), so a DNS answer
that changes between the check and the connection (DNS rebinding) is never used.
Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.core.config import Settings
from app.core.errors import Unprocessable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Unprocessable):
    type, title = "callback-target-refused", "Callback target not allowed"


class TargetUnresolvable(Exception):
    """The host did not resolve (a transient condition at delivery time)."""


def _allowed_entries(settings: Settings) -> list[str]:
    return [h.strip().lower() for h in settings.callback_allowed_hosts.split(",") if h.strip()]


def _is_internal(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if embedded is not None and _is_internal(embedded):
                return True
    return (
        not ip.is_global
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_private
    )


def _allow_listed(host: str, addresses: Sequence[IPAddress], entries: list[str]) -> bool:
    for entry in entries:
        if entry.strip("[]") == host:
            return True
        try:
            net = ipaddress.ip_network(entry.strip("[]"), strict=False)
        except ValueError:
            continue
        if addresses and all(a in net for a in addresses):
            return True
    return False


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetUnresolvable(f"{host} does not resolve: {exc}") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


@dataclass(frozen=True)
class Checked:
    """A target as checked: why it may not be called (None: it may), and the address the
    check approved, which the sender connects to (so DNS cannot answer differently
    between the check and the connection)."""

    refused: str | None
    address: IPAddress | None = None


def refusal(url: str, settings: Settings) -> str | None:
    """Why `url` may not be called now, or None if it may. Raises TargetUnresolvable."""
    return check(url, settings).refused


def check(url: str, settings: Settings) -> Checked:
    """`refusal` with the approved address. Raises TargetUnresolvable."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        return Checked(f"not a valid URL: {exc}")
    if parts.scheme not in ("http", "https"):
        return Checked("only http and https targets are called")
    host = (parts.hostname or "").lower()
    if not host:
        return Checked("the URL has no host")
    if parts.username or parts.password:
        return Checked("credentials in the URL are not accepted")
    entries = _allowed_entries(settings)
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        addresses = _resolve(host, port)
    if not addresses:
        raise TargetUnresolvable(f"{host} resolves to no address")
    if host in entries or _allow_listed(host, addresses, entries):
        return Checked(None, addresses[0])
    internal = sorted({str(a) for a in addresses if _is_internal(a)})
    if internal:
        return Checked(
            f"{host} is (or resolves to) the internal address {internal[0]}; "
            "add it to LETHE_CALLBACK_ALLOWED_HOSTS to allow it"
        )
    return Checked(None, addresses[0])


def check_targets(urls: Sequence[str], settings: Settings, *, pointer: str) -> None:
    """Refuse (422, nothing stored) if any URL may not be called."""
    errors = []
    for i, url in enumerate(urls):
        try:
            why = refusal(url, settings)
        except TargetUnresolvable as exc:
            why = str(exc)
        if why:
            errors.append({"pointer": f"{pointer}/{i}", "detail": why})
    if errors:
        raise TargetRefused(
            f"{len(errors)} callback target(s) are not allowed: {errors[0]['detail']}",
            errors=errors,
        )


def origin(url: str) -> str:
    """scheme://host[:port] of a URL: what logs and the audit chain name (paths and queries
    may carry tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
