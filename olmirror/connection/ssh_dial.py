"""Reaching a remote host: settings from the spec and ~/.ssh/config, host keys, jump hosts, login.

Every failure here is raised as `Unreachable` with a reason an operator can act on
(host down, name unknown, host key unknown or changed, authentication refused).
"""

from __future__ import annotations

import getpass
import itertools
import logging
import os
import socket
import time
from dataclasses import dataclass, replace

import paramiko

from olmirror.connection import known_hosts
from olmirror.connection.known_hosts import (
    HostKeyPolicy,
    UnknownHostKey,
    changed_key_reason,
    unknown_key_reason,
)
from olmirror.connection.ssh_config import load_ssh_config
from olmirror.errors import OlmirrorError, Unreachable
from olmirror.remote.upstream_http import Retries
from olmirror.spec import Host

CONNECT_TIMEOUT = 20.0
# OpenSSH tries once (ConnectionAttempts 1); olmirror fans out to many hosts at once, and
# sshd's MaxStartups drops connections at random when many arrive together.
CONNECT_ATTEMPTS = 3
RETRY = Retries(backoff=0.5)
KEEPALIVE_INTERVAL = 15
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"

# paramiko logs transport errors itself; without a handler Python would print them on stderr
# next to our own, clearer report of the same failure.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """One SSH server to log in to, with everything needed to do so."""

    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    known_hosts: str
    accept_new: bool
    proxy_jump: str | None = None
    proxy_command: str | None = None
    connect_timeout: float = CONNECT_TIMEOUT
    keepalive: int = KEEPALIVE_INTERVAL
    attempts: int = CONNECT_ATTEMPTS  # tries of a connection whose failure may pass

    @property
    def label(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"

    @property
    def key_name(self) -> str:
        """The name of this server in known_hosts, as OpenSSH writes it."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def _option(options: paramiko.SSHConfigDict, key: str) -> str | None:
    value = options.get(key)
    return None if value is None or str(value).lower() == "none" else str(value)


def _number(options: paramiko.SSHConfigDict, key: str, default: float) -> float:
    value = _option(options, key)
    try:
        return float(value) if value else default
    except ValueError:
        raise OlmirrorError(f"~/.ssh/config: {key} {value!r} is not a number") from None


def resolve(name: str, host: Host, config: paramiko.SSHConfig) -> Endpoint:
    """Spec fields win over ~/.ssh/config, which wins over OpenSSH's defaults.

    As with `ssh`, the config is consulted for every host, under its `ssh_alias`, or else
    its address, or else its name; a spec `port` of 22 (the default) leaves the config's Port.
    """
    lookup = host.ssh_alias or host.address or name
    options = config.lookup(lookup)
    hostname = (host.address if host.ssh_alias else None) or options.get("hostname") or lookup
    port = host.port if host.port != 22 else int(_number(options, "port", 22))
    if host.identity_file:
        identities: tuple[str, ...] = (os.path.expanduser(host.identity_file),)
        if not os.path.isfile(identities[0]):
            raise Unreachable(
                f"host {name!r}: identity_file {host.identity_file} does not exist on this machine"
            )
    else:
        configured = [os.path.expanduser(p) for p in options.get("identityfile", [])]
        identities = tuple(p for p in configured if os.path.isfile(p))
    user_files = (_option(options, "userknownhostsfile") or "").split()
    known_hosts = host.known_hosts or (user_files[0] if user_files else "~/.ssh/known_hosts")
    return Endpoint(
        hostname=hostname,
        port=port,
        user=host.user or options.get("user") or getpass.getuser(),
        identity_files=identities,
        known_hosts=os.path.expanduser(known_hosts),
        accept_new=host.host_key_policy == "accept-new",
        proxy_jump=_option(options, "proxyjump"),
        proxy_command=_option(options, "proxycommand"),
        connect_timeout=_number(options, "connecttimeout", CONNECT_TIMEOUT),
        keepalive=int(_number(options, "serveraliveinterval", KEEPALIVE_INTERVAL)),
        attempts=max(1, int(_number(options, "connectionattempts", CONNECT_ATTEMPTS))),
    )


def _jump_hosts(target: Endpoint, config: paramiko.SSHConfig) -> list[Endpoint]:
    """The hops of ProxyJump (`[user@]host[:port],...`), each with its own ~/.ssh/config entry."""
    hops = []
    for spec in (target.proxy_jump or "").split(","):
        spec = spec.strip().removeprefix("ssh://")
        if not spec:
            continue
        user, _, rest = spec.rpartition("@")
        if rest.startswith("["):  # [IPv6]:port
            hop_host, _, port = rest[1:].partition("]")
            port = port.removeprefix(":")
        else:
            hop_host, _, port = rest.partition(":")
        options = config.lookup(hop_host)
        configured = [os.path.expanduser(p) for p in options.get("identityfile", [])]
        hops.append(
            replace(
                target,
                hostname=options.get("hostname") or hop_host,
                port=int(port) if port else int(_number(options, "port", 22)),
                user=user or options.get("user") or getpass.getuser(),
                identity_files=tuple(p for p in configured if os.path.isfile(p))
                or target.identity_files,
                proxy_jump=None,
                proxy_command=None,
                accept_new=False,  # a bastion the spec does not name is never trusted blindly
            )
        )
    return hops


def _auth_reason(target: Endpoint, exc: paramiko.SSHException) -> str:
    offered = [f"identity file {p}" for p in target.identity_files]
    if os.environ.get("SSH_AUTH_SOCK"):
        offered.append("the keys in ssh-agent")
    if not target.identity_files:
        offered.append("the default keys in ~/.ssh")
    if isinstance(exc, paramiko.PasswordRequiredException):
        return f"the private key is encrypted ({exc}); load it into ssh-agent with `ssh-add` first"
    return (
        f"authentication as {target.user!r} failed ({exc}): the server refused "
        f"{', '.join(offered)}; check the host's user and identity_file, and that the public "
        f"key is in ~{target.user}/.ssh/authorized_keys there"
    )


class _Passing(Unreachable):
    """A failure another try may not meet: a DNS lookup that failed for now (EAI_AGAIN), a
    connection reset or dropped before the SSH banner."""


def _tcp(target: Endpoint) -> socket.socket:
    where = f"{target.hostname}:{target.port}"
    try:
        sock = socket.create_connection((target.hostname, target.port), target.connect_timeout)
    except socket.gaierror as exc:
        kind = _Passing if exc.errno == socket.EAI_AGAIN else Unreachable
        raise kind(f"cannot resolve host name {target.hostname!r} ({exc.strerror})") from None
    except ConnectionResetError:
        raise _Passing(f"{where} reset the connection") from None
    except ConnectionRefusedError:
        raise Unreachable(
            f"connection refused by {where}: no SSH server listens there (sshd is down, "
            "or the port is wrong)"
        ) from None
    except TimeoutError:
        raise Unreachable(
            f"no answer from {where} within {target.connect_timeout:g} s: the host is down, "
            "or a firewall drops the connection"
        ) from None
    except OSError as exc:
        raise Unreachable(f"cannot connect to {where}: {exc.strerror or exc}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    return sock


def _login(target: Endpoint, sock: object) -> paramiko.SSHClient:
    """Handshake, verify the host key, authenticate; `sock` is closed on failure."""
    client = paramiko.SSHClient()
    keys = client.get_host_keys()
    revoked: list[paramiko.PKey] = []
    try:
        for path in (GLOBAL_KNOWN_HOSTS, target.known_hosts):
            if os.path.exists(path):
                revoked += known_hosts.load(keys, path)
    except OSError as exc:
        raise Unreachable(f"cannot read known_hosts {target.known_hosts}: {exc}") from None
    client.set_missing_host_key_policy(HostKeyPolicy(target.known_hosts, target.accept_new))
    try:
        client.connect(
            hostname=target.hostname,
            port=target.port,
            username=target.user,
            key_filename=list(target.identity_files) or None,
            look_for_keys=not target.identity_files,
            allow_agent=True,
            timeout=target.connect_timeout,
            banner_timeout=target.connect_timeout,
            auth_timeout=target.connect_timeout,
            channel_timeout=target.connect_timeout,
            sock=sock,  # type: ignore[arg-type]
        )
    except Exception as exc:
        client.close()
        if hasattr(sock, "close"):
            sock.close()  # type: ignore[attr-defined]
        raise _failure(target, exc) from None
    transport = client.get_transport()
    assert transport is not None
    if transport.get_remote_server_key() in revoked:
        client.close()
        raise Unreachable(
            f"the host key of {target.key_name} is marked @revoked in known_hosts; olmirror "
            "refuses it, as OpenSSH does"
        )
    transport.set_keepalive(target.keepalive)
    return client


def _failure(target: Endpoint, exc: Exception) -> Exception:
    if isinstance(exc, UnknownHostKey):
        return Unreachable(
            unknown_key_reason(target.hostname, target.port, target.known_hosts, exc)
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return Unreachable(changed_key_reason(target.key_name, target.known_hosts, exc))
    if isinstance(exc, paramiko.AuthenticationException):
        return Unreachable(_auth_reason(target, exc))
    if isinstance(exc, paramiko.SSHException) and "authentication methods" in str(exc):
        return Unreachable(
            f"no key to log in as {target.user!r} with: set identity_file, or load a key "
            "into ssh-agent"
        )
    if isinstance(exc, (paramiko.SSHException, EOFError, OSError)):
        # A server that drops a connection before its banner is busy (sshd's MaxStartups
        # refuses connections at random once many are unauthenticated): worth another try.
        dropped = isinstance(exc, (EOFError, ConnectionResetError)) or "banner" in str(exc)
        kind = _Passing if dropped else Unreachable
        return kind(f"the SSH handshake with {target.label} failed: {exc or type(exc)}")
    return exc


@dataclass
class Session:
    """A logged-in client and the jump-host clients it travels through (closed after it)."""

    client: paramiko.SSHClient
    target: Endpoint
    hops: list[paramiko.SSHClient]

    def close(self) -> None:
        for client in [self.client, *reversed(self.hops)]:
            client.close()


def _first_socket(target: Endpoint) -> object:
    if target.proxy_command:
        try:
            return paramiko.ProxyCommand(target.proxy_command)
        except (OSError, paramiko.SSHException) as exc:
            raise Unreachable(f"ProxyCommand {target.proxy_command!r} failed: {exc}") from None
    return _tcp(target)


def _next_socket(client: paramiko.SSHClient, hop: Endpoint, after: Endpoint) -> paramiko.Channel:
    """A tunnel from jump host `hop` to the next server, as `ssh -J` opens it."""
    transport = client.get_transport()
    assert transport is not None
    try:
        return transport.open_channel(
            "direct-tcpip",
            (after.hostname, after.port),
            ("127.0.0.1", 0),
            timeout=after.connect_timeout,
        )
    except (paramiko.SSHException, OSError) as exc:
        raise Unreachable(
            f"jump host {hop.label} could not open a connection to "
            f"{after.hostname}:{after.port}: {exc}"
        ) from None


def open_session(name: str, host: Host) -> Session:
    """Log in to host `name`, through its jump hosts if it has any; a failure that may pass
    is tried again, as often as ConnectionAttempts (~/.ssh/config) says, 3 by default."""
    try:
        config = load_ssh_config()
        target = resolve(name, host, config)
        chain = [*_jump_hosts(target, config), target]
    except Unreachable:
        raise
    except (ValueError, OlmirrorError) as exc:
        raise Unreachable(f"host {name!r}: {exc}") from None
    via = f" via {', '.join(h.label for h in chain[:-1])}" if len(chain) > 1 else ""
    tries = 0
    while True:
        tries += 1
        try:
            return _dial(target, chain)
        except _Passing as exc:
            if tries < target.attempts:
                log.debug("host %s: %s; trying again", name, exc)
                time.sleep(RETRY.wait(tries))
                continue
            reason = f"{exc} ({tries} tries)"
        except Unreachable as exc:
            reason = str(exc)
        raise Unreachable(f"host {name!r} ({target.label}{via}): {reason}") from None


def _dial(target: Endpoint, chain: list[Endpoint]) -> Session:
    hops: list[paramiko.SSHClient] = []
    try:
        sock = _first_socket(chain[0])
        for hop, after in itertools.pairwise(chain):
            hops.append(_login(hop, sock))
            sock = _next_socket(hops[-1], hop, after)
        return Session(_login(target, sock), target, hops)
    except Unreachable:
        for client in reversed(hops):
            client.close()
        raise
