"""GET from an upstream as a careful client does on a bad network.

Connections are kept alive and reused per origin (one DNS lookup and one TLS handshake
serve many requests); a transient failure (429, 5xx, a reset or cut connection, a
timeout, a failed DNS lookup, a damaged body the caller detects) is tried again after a
backoff with jitter, bounded by a count and a total time; a final answer (404, 401, 403,
an untrusted certificate) is never retried. Proxies come from the environment, as
urllib finds them. A private upstream's credentials (`Auth`) go to its own origin only,
and to the same host upgraded from http to https (as requests keeps them, `sends_auth`):
a redirect to, or a file on, another host or port, or down to plain http, is asked for
without them.

Plain standard library on purpose: `fetch_files.py` runs on the mirror host with this
module's source placed before its own. The index client uses it on this machine.
"""

import base64
import collections
import http.client
import random
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request

RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)
AUTH_STATUSES = (401, 403)
# An untrusted certificate (Python 3.7+; older hosts' Pythons lack the class).
_CERTIFICATE = getattr(ssl, "SSLCertVerificationError", ())
MAX_REDIRECTS = 5
MAX_WAIT = 30.0  # seconds: the longest single wait between tries
DRAIN = 1 << 16  # bytes of an answer left unread that are read so its connection serves on
# The names of the files an index serves (a distribution, or its PEP 658 metadata), as
# against its pages: a 403 on one is that file refused, not the index.
FILE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".egg", ".metadata")
# A request with one of these headers is answered 304 when the page is unchanged; `read`
# is then given that answer (it holds the page already).
CONDITIONAL = {"If-None-Match", "If-Modified-Since"}


class Transient(Exception):
    """A failure that another try may not meet; `wait`: the server's Retry-After."""

    def __init__(self, reason, wait=None):
        super().__init__(reason)
        self.wait = wait


class Final(Exception):
    """An answer that another try would only repeat; `status`: its HTTP status, if any."""

    def __init__(self, reason, status=None):
        super().__init__(reason)
        self.status = status


class Retries(collections.namedtuple("Retries", "attempts backoff within")):
    """At most `attempts` tries of one request, none started more than `within` seconds
    after its first failure; the first wait is `backoff` seconds, and each later one
    doubles, half of it drawn at random so that many clients do not retry in step.
    A tuple, so that a resource holding it is saved in a plan as it is."""

    __slots__ = ()

    def wait(self, tries, hint=None):
        if hint is not None:
            return min(hint, MAX_WAIT)
        step = min(self.backoff * 2 ** (tries - 1), MAX_WAIT)
        return step / 2 + random.uniform(0, step / 2)

    def pause(self, tries, failed, hint=None):
        """Seconds to wait before another try after `tries` of them, the first failure at
        `failed` (time.monotonic()); None when no other try may start."""
        wait = self.wait(tries, hint)
        if tries >= self.attempts or time.monotonic() - failed + wait > self.within:
            return None
        return wait


Retries.__new__.__defaults__ = (5, 0.5, 120.0)  # `defaults=` needs Python 3.7
DEFAULT_RETRIES = Retries()


class Auth(collections.namedtuple("Auth", "origin header source")):
    """The upstream's `origin` (see `origin`), the `Authorization` header sent to it alone
    (None: the upstream is read without credentials), and, for messages (never the
    secret), where that header came from, or without one what to do to send one
    (`source`)."""

    __slots__ = ()

    def __repr__(self):
        hidden = "***" if self.header else None
        return f"Auth(origin={self.origin!r}, header={hidden}, source={self.source!r})"


def _upstreams(url, auth):
    """Whether `url` is where `auth`'s credentials belong: the upstream's origin, or its
    host's https on the default port when the upstream is its plain http on the default
    port (an upgrade, as requests' `should_strip_auth` allows); never another host or
    port, nor https down to http."""
    if origin(url) == auth.origin:
        return True
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    upgrade = parts.scheme == "https" and port_of(parts) == 443
    return upgrade and auth.origin == f"http://{host}:80"


def sends_auth(url, auth):
    """Whether a request of `url` carries `auth`'s header (see `_upstreams`)."""
    return auth is not None and bool(auth.header) and _upstreams(url, auth)


def _a_file(url):
    """Whether `url` names a file of the index (a distribution or its metadata), not a page."""
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    return name.lower().endswith(FILE_SUFFIXES)


def refused(url, status, reason, auth):
    """Why the upstream (or a file host) answered 401 or 403, and what to do; `auth`: the
    upstream's (None: no upstream is known)."""
    answer = f"HTTP {status} {reason}"
    host = urllib.parse.urlsplit(url).hostname
    if auth is None:
        return (
            f"{url} asks for credentials ({answer}); set mirror.upstream_auth or give its "
            "host an entry in ~/.netrc"
        )
    if not _upstreams(url, auth):
        asks = "asks for credentials" if status == 401 else "refuses it"
        return (
            f"{url} {asks} ({answer}), and it is not on the upstream's origin {auth.origin}, "
            "the only one olmirror sends credentials to; serve the files from the upstream, "
            "or let them be read where they are without credentials"
        )
    blocked = status == 403 and _a_file(url)
    if auth.header and blocked:
        return (
            f"the upstream's index refused the file {url} ({answer}) with the credentials from "
            f"{auth.source}: it blocks that file (a policy or a scan of Artifactory or Nexus, "
            "say), or those credentials are not permitted to read it; ask the index's "
            "administrators, or pin another release"
        )
    if auth.header:
        return (
            f"the upstream {url} refused the credentials from {auth.source} ({answer}); check "
            "their values, and that their account may read this index"
        )
    todo = auth.source or f"set mirror.upstream_auth or add the host {host} to ~/.netrc"
    if blocked:
        return (
            f"the upstream's index refused the file {url} ({answer}), read without "
            f"credentials: it blocks that file, or only some credentials may read it; {todo}"
        )
    return f"the upstream {url} asks for credentials ({answer}); {todo}"


def _retry_after(value):
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: back off as usual


def _classify(exc, host):
    """The Transient or Final that `exc`, raised while talking to `host`, amounts to."""
    if isinstance(exc, (Transient, Final)):
        return exc
    if isinstance(exc, socket.gaierror):
        return Transient(f"cannot look up host {host!r} ({exc.strerror or exc})")
    if isinstance(exc, OSError) and str(exc).startswith("Tunnel connection failed"):
        return Final(f"the proxy refused the connection ({exc})")
    if isinstance(exc, _CERTIFICATE):
        return Final(
            f"the TLS certificate of {host} is not trusted ({exc}); set "
            "mirror.ca_file to the CA that signs it"
        )
    # after the certificate check: SSLCertVerificationError is a ValueError too
    if isinstance(exc, ValueError):  # http.client.InvalidURL and UnicodeError too
        return Final(f"an unusable URL or answer ({exc.__class__.__name__}: {exc})")
    if isinstance(exc, http.client.IncompleteRead):
        return Transient(
            f"the connection was cut after {len(exc.partial)} bytes of the body "
            f"({exc.expected} more expected)"
        )
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return Transient("no answer in time (timed out)")
    if isinstance(exc, http.client.RemoteDisconnected):
        return Transient("the server closed the connection without answering")
    if isinstance(exc, http.client.BadStatusLine):
        return Final(f"the upstream does not answer HTTP ({exc!r})")
    if isinstance(exc, ConnectionRefusedError):
        return Transient(f"connection refused by {host}")
    if isinstance(exc, (ConnectionError, ssl.SSLError)):
        return Transient(f"the connection failed ({exc.__class__.__name__}: {exc})")
    if isinstance(exc, http.client.HTTPException):
        return Transient(f"a broken HTTP answer ({exc.__class__.__name__}: {exc})")
    if isinstance(exc, OSError):
        return Transient(f"cannot connect to {host} ({exc.strerror or exc})")
    return None


def port_of(parts):
    """The port of a split URL, its scheme's default when none is written."""
    return parts.port or (443 if parts.scheme == "https" else 80)


def origin(url):
    """scheme://host:port of `url`, the port always written out."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port_of(parts)}"


def _proxy_for(parts):
    """(host, port, Proxy-Authorization header or None) of the proxy for a URL, or None."""
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy:
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    p = urllib.parse.urlsplit(proxy)
    auth = None
    if p.username is not None:
        user = urllib.parse.unquote(p.username) + ":" + urllib.parse.unquote(p.password or "")
        auth = "Basic " + base64.b64encode(user.encode()).decode()
    return p.hostname, port_of(p), auth


def chunks(reply, size=1 << 16):
    """The body as it arrives (read1: a body that drips still yields); Transient when
    the connection ends before the Content-Length the server announced."""
    while True:
        chunk = reply.read1(size)
        if not chunk:
            break
        yield chunk
    if reply.length:
        raise Transient(f"the connection was cut with {reply.length} bytes of the body to come")


class Client:
    """GETs over kept-alive connections, shared by threads; counts what it does in `stats`
    (requests, connections opened, each one DNS lookup and TLS handshake, and retries)."""

    def __init__(self, context=None, timeout=30.0, retries=None, on_retry=None, auth=None):
        self.context = context or ssl.create_default_context()
        self.timeout = timeout  # seconds without a byte
        self.retries = retries or DEFAULT_RETRIES
        self.on_retry = on_retry  # called with (url, reason) before each wait
        self.auth = auth  # the upstream's Auth; None: no upstream known, no credentials
        self.stats = {"requests": 0, "connections": 0, "retries": 0}
        self._idle = {}  # (scheme, host, port) -> [connection]
        self._lock = threading.Lock()

    def _count(self, key):
        with self._lock:
            self.stats[key] += 1

    def _connection(self, parts, proxy, fresh=False):
        """(pool key, connection, reused): an idle one of the origin if there is one, and
        a new one when `fresh` (the idle ones are then dropped: they outlived the server's
        keep-alive as the last one did)."""
        port = port_of(parts)
        key = (parts.scheme, parts.hostname, port)
        with self._lock:
            idle = self._idle.pop(key, []) if fresh else self._idle.get(key)
            if idle and not fresh:
                return key, idle.pop(), True
        for stale in idle or ():
            stale.close()
        host, connect_port = (proxy[0], proxy[1]) if proxy else (parts.hostname, port)
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                host, connect_port, timeout=self.timeout, context=self.context
            )
            if proxy:
                headers = {"Proxy-Authorization": proxy[2]} if proxy[2] else None
                conn.set_tunnel(parts.hostname, port, headers=headers)
        else:
            conn = http.client.HTTPConnection(host, connect_port, timeout=self.timeout)
        self._count("connections")
        return key, conn, False

    def _release(self, key, conn, reply):
        """Back to the pool once the answer is read whole; what `read` left is read when
        short (DRAIN bytes), else the connection is closed rather than the rest fetched."""
        if not reply.isclosed() and reply.length is not None and reply.length <= DRAIN:
            reply.read()
        if reply.will_close or not reply.isclosed():
            conn.close()
            return
        with self._lock:
            self._idle.setdefault(key, []).append(conn)

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _once(self, url, headers, read):
        """One try: the request, its redirects, and `read(reply, url)` of the answer."""
        for _ in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise Final(f"not an http(s) URL: {url!r}")
            proxy = _proxy_for(parts)
            key, conn, reused = self._connection(parts, proxy)
            sent = dict(headers)
            if sends_auth(url, self.auth):
                sent["Authorization"] = self.auth.header  # per hop: a redirect elsewhere drops it
            if proxy and parts.scheme == "http":  # through the proxy, by absolute URL
                target = url
                if proxy[2]:
                    sent["Proxy-Authorization"] = proxy[2]
            else:  # straight, or through the proxy's tunnel
                target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
            try:
                self._count("requests")
                try:
                    conn.request("GET", target, headers=sent)
                    reply = conn.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not reused:
                        raise
                    # the server closed a kept-alive connection while it was idle: not a
                    # fault of the network, so try at once on a new one
                    conn.close()
                    key, conn, reused = self._connection(parts, proxy, fresh=True)
                    self._count("requests")
                    conn.request("GET", target, headers=sent)
                    reply = conn.getresponse()
                status = reply.status
                if status in (301, 302, 303, 307, 308) and reply.getheader("Location"):
                    location = urllib.parse.urljoin(url, reply.getheader("Location"))
                    location = urllib.parse.urldefrag(location)[0]
                    if location.lower().startswith("http:") and url.lower().startswith("https:"):
                        raise Final(f"it redirects from https to plain http ({location})")
                    self._release(key, conn, reply)
                    url = location
                    continue
                if status in RETRY_STATUSES:
                    conn.close()
                    wait = _retry_after(reply.getheader("Retry-After"))
                    raise Transient(f"HTTP {status} {reply.reason}", wait)
                if status in AUTH_STATUSES:
                    conn.close()
                    raise Final(refused(url, status, reply.reason, self.auth), status)
                if status >= 300 and not (status == 304 and CONDITIONAL & set(sent)):
                    conn.close()
                    raise Final(f"HTTP {status} {reply.reason}", status)
                result = read(reply, url)
                self._release(key, conn, reply)
                return result
            except BaseException:
                conn.close()
                raise
        raise Final(f"more than {MAX_REDIRECTS} redirects")

    def get(self, url, read, headers=None):
        """`read(reply, final_url)`'s result for the answer to GET `url`, tried again on a
        transient failure; `read` raises Transient for a body it finds damaged. Raises
        Final with the last reason, and how many tries it took, when it gives up."""
        headers = {"User-Agent": "olmirror", **(headers or {})}
        host = urllib.parse.urlsplit(url).hostname
        failed = None  # when the first try failed: `within` counts from there, so a long
        tries = 0  # download cut late still gets its next try
        while True:
            tries += 1
            try:
                return self._once(url, headers, read)
            except Exception as exc:
                failure = _classify(exc, host)
                if failure is None:
                    raise
                if isinstance(failure, Final):
                    raise failure from None
                failed = failed or time.monotonic()
                pause = self.retries.pause(tries, failed, failure.wait)
                if pause is None:
                    raise Final(
                        f"{failure} (gave up after {tries} tr{'y' if tries == 1 else 'ies'})"
                    ) from None
                self._count("retries")
                if self.on_retry:
                    self.on_retry(url, str(failure))
                time.sleep(pause)
