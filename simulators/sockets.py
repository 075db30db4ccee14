"""Listening sockets for the HTTPS simulators, and the URL clients use to reach them."""

from __future__ import annotations

import errno
import socket


def _listening_socket(family: socket.AddressFamily, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


def bind(host: str, port: int) -> list[socket.socket]:
    """Sockets for ``host``. For "localhost" both loopbacks on one port, so a client reaches this
    server whichever address ``localhost`` resolves to first."""
    if host != "localhost":
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        return [_listening_socket(family, str(address[0]), port)]
    for _ in range(20):
        v4 = _listening_socket(socket.AF_INET, "127.0.0.1", port)
        try:
            v6 = _listening_socket(socket.AF_INET6, "::1", v4.getsockname()[1])
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and port == 0:
                v4.close()
                continue
            return [v4]  # no IPv6 loopback on this machine
        return [v4, v6]
    raise OSError(errno.EADDRINUSE, "no port free on both 127.0.0.1 and ::1")


def https_url(host: str, port: int) -> str:
    """The base URL of a server bound to ``host:port``; a wildcard address is reached as localhost."""
    url_host = "localhost" if host in ("localhost", "0.0.0.0", "::", "") else host
    if ":" in url_host:
        url_host = f"[{url_host}]"
    return f"https://{url_host}:{port}"
