"""Whether a URL answers 2xx from this host, asked as pip would: the check that a worker's
host reaches the mirror. Part of the host program (`host_program.py`), plain standard
library like the rest of it.
"""

import os
import time

MAX_REDIRECTS = 10  # as urllib's
CHECK_TRIES = 3  # a URL check's tries, when a failure may pass
CHECK_PAUSE = 0.25  # seconds before the second try; it doubles
PASSING_STATUS = (408, 429)  # with every 5xx
MAX_HEAD = 64 << 10  # an answer's status line and headers
CHUNK_HEAD = 4096


def url_problem(url):
    """None when `url` answers 2xx, else one line saying why, asked as pip would: after
    redirects, through the proxy the environment names. A failure that may pass (a reset or
    refused connection, HTTP 408, 429 or 5xx) is asked again, CHECK_TRIES in all, after a
    pause that doubles; a timeout is not, as it has waited long enough."""
    for tries in range(1, CHECK_TRIES + 1):
        why, passing = _get_once(url)
        if why is None or not passing or tries == CHECK_TRIES:
            return why if why is None or tries == 1 else f"{why} (after {tries} tries)"
        time.sleep(CHECK_PAUSE * 2 ** (tries - 1))
    return None  # not reached: the last try returns


def _get_once(url):
    """(why `url` did not answer 2xx or None, whether another try may pass).

    Plain http without a proxy (a mirror on the workers' network, as usual) is asked over a
    socket: urllib's import alone would cost a host three times the CPU of the whole check.
    """
    from urllib.parse import urljoin, urlsplit

    proxied = any(name.lower().endswith("_proxy") for name in os.environ)
    for _ in range(MAX_REDIRECTS + 1):
        if proxied or urlsplit(url).scheme != "http":
            return _get_with_urllib(url)
        try:
            code, reason, location = _get_plain(url)
        except (OSError, UnicodeError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}", isinstance(exc, ConnectionError)
        if code in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
        elif 200 <= code < 300:
            return None, False
        else:
            return f"it answered HTTP {code} {reason}", code in PASSING_STATUS or code >= 500
    return f"more than {MAX_REDIRECTS} redirects", False


def _get_plain(url):
    """(status, reason, Location) of a GET of the http `url`; OSError when there is none,
    ValueError for an answer that is not HTTP."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = f"GET {target} HTTP/1.0\r\nHost: {parts.netloc}\r\nAccept: text/html\r\n\r\n"
    head = b""
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=10) as sock:
        sock.sendall(request.encode("latin-1"))
        while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
            chunk = sock.recv(CHUNK_HEAD)
            if not chunk:
                break
            head += chunk
    lines = head.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/") or not status[1].isdigit():
        raise BadStatusLine(f"{lines[0][:80]!r}")
    fields = (line.partition(":") for line in lines[1:])
    headers = {name.strip().lower(): value.strip() for name, _, value in fields}
    return int(status[1]), status[2] if len(status) > 2 else "", headers.get("location")


class BadStatusLine(ValueError):
    """An answer that is not HTTP (named as http.client names it)."""


def _get_with_urllib(url):
    """`_get_once` with urllib, which knows TLS and the proxy variables (no_proxy too)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": "text/html"})
    try:
        # a new opener: it reads the proxy variables now (urlopen's is built once)
        with urllib.request.build_opener().open(request, timeout=10) as reply:
            reply.read(1)
    except urllib.error.HTTPError as exc:
        passing = exc.code in PASSING_STATUS or exc.code >= 500
        return f"it answered HTTP {exc.code} {exc.reason}", passing
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{type(reason).__name__}: {reason}", isinstance(reason, ConnectionError)
    return None, False
