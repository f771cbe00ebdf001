"""Network probes used by the health checks; each returns a bool and never raises."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

LOCALHOST = "127.0.0.1"

#: MQTT 3.1.1 CONNECT: protocol "MQTT" level 4, clean session, keep-alive 60 s, empty client id.
MQTT_CONNECT = bytes.fromhex("100c00044d5154540402003c0000")
MQTT_CONNACK_OK = bytes.fromhex("20020000")
MQTT_DISCONNECT = bytes.fromhex("e000")


def parse_host_port(address: str) -> tuple[str, int]:
    """``"host:port"`` (the first of a comma-separated list) -> (host, port)."""
    first = address.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not a host:port address: {address!r}")
    return host.strip("[]") or LOCALHOST, int(port)


def url_port(url: str) -> int:
    """The port of a URL (``http://127.0.0.1:9000/x`` -> 9000; else the scheme's default)."""
    parts = urlsplit(url)
    if parts.port is not None:
        return parts.port
    return 443 if parts.scheme == "https" else 80


def tcp_open(port: int, host: str = LOCALHOST, timeout_s: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _exchange(
    port: int,
    request: bytes,
    expect_len: int,
    host: str,
    timeout_s: float,
    tls: ssl.SSLContext | None = None,
) -> bytes:
    with socket.create_connection((host, port), timeout=timeout_s) as plain:
        if tls is None:
            return _ask(plain, request, expect_len)
        with tls.wrap_socket(plain, server_hostname=host) as encrypted:
            return _ask(encrypted, request, expect_len)


def _ask(sock: socket.socket, request: bytes, expect_len: int) -> bytes:
    sock.sendall(request)
    answer = b""
    while len(answer) < expect_len:
        chunk = sock.recv(expect_len - len(answer))
        if not chunk:
            break
        answer += chunk
    return answer


def redis_ping(
    port: int, host: str = LOCALHOST, timeout_s: float = 1.0, tls_cafile: Path | None = None
) -> bool:
    """True when Redis answers PING with +PONG (not while it is still loading its data); over
    TLS, trusting ``tls_cafile``, when it is given."""
    tls = ssl.create_default_context(cafile=tls_cafile) if tls_cafile is not None else None
    try:
        return _exchange(port, b"PING\r\n", 7, host, timeout_s, tls) == b"+PONG\r\n"
    except OSError:
        return False


def mqtt_answers(port: int, host: str = LOCALHOST, timeout_s: float = 1.0) -> bool:
    """True when an MQTT broker answers a CONNECT with a CONNACK, whether it accepts an
    anonymous client (return code 0) or refuses it (5, not authorised): both mean it serves."""
    request = MQTT_CONNECT + MQTT_DISCONNECT
    try:
        answer = _exchange(port, request, len(MQTT_CONNACK_OK), host, timeout_s)
    except OSError:
        return False
    return len(answer) == 4 and answer[:2] == MQTT_CONNACK_OK[:2] and answer[3] in (0, 5)
