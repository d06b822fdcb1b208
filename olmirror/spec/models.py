"""The spec file's shape, as pydantic models.

Field-level rules live here; rules that relate one part of the spec to another
(a worker's host must exist, names are unique) live in `checks.py`, so that each
error can point at the exact field that is wrong.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from olmirror.spec.values import (
    IMAGE_PATTERN,
    LOCAL,
    PLATFORM_PATTERN,
    PYTHON_PATTERN,
    Address,
    BucketName,
    ConfigPath,
    EnvName,
    HttpUrl,
    KeyPrefix,
    LambdaName,
    Listen,
    Name,
    PathStr,
    ProjectName,
    Region,
    RequirementStr,
    SshAlias,
    User,
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Host(_Model):
    """How to reach one machine. `local` needs no entry; every other host is reached over SSH."""

    address: Address | None = Field(None, description="Host name or IP address to connect to.")
    port: int = Field(22, ge=1, le=65535)
    user: User | None = None
    identity_file: PathStr | None = Field(None, description="Private key file (on this machine).")
    ssh_alias: SshAlias | None = Field(
        None, description="A Host entry of ~/.ssh/config to take HostName, User, Port... from."
    )
    known_hosts: PathStr | None = Field(
        None, description="known_hosts file to verify host keys against (default: the user's)."
    )
    host_key_policy: Literal["strict", "accept-new"] = Field(
        "strict", description="'accept-new' records the key of a host seen for the first time."
    )
    become: bool = Field(False, description="Run privileged steps through sudo.")
    become_password_env: EnvName | None = Field(
        None, description="Environment variable holding the sudo password (never the password)."
    )
    ol: PathStr = Field("ol", description="The OpenLambda `ol` program on this host.")
    python: PathStr | None = Field(
        None,
        description="The Python that runs olmirror's own programs on this host (its fact "
        "probe, lock and fetcher; standard library only, any Python 3.7+), as Ansible's "
        "ansible_python_interpreter. By default python3 from PATH, unless that is a script "
        "(a version manager's shim: pyenv, asdf), which can cost more than the probe itself: "
        "then /usr/bin/python3 or /usr/local/bin/python3 if there is one.",
    )
    state_dir: PathStr | None = Field(
        None,
        description="Folder for olmirror's lock on this host (default ~/.local/state/olmirror).",
    )
    facts_timeout: float = Field(
        600,
        gt=0,
        le=86400,
        description="Seconds the host may take to answer olmirror's one fact-reading command "
        "before it is reported as stalled.",
    )


class TargetSetting(_Model):
    """A Python environment that installs from the mirror, as the spec declares it
    (`lock.targets.Target` is the target itself: its tags and markers)."""

    python: Annotated[str, StringConstraints(pattern=PYTHON_PATTERN)] = Field(
        description="Python version as MAJOR.MINOR, e.g. '3.12'."
    )
    platform: Annotated[str, StringConstraints(pattern=PLATFORM_PATTERN)] = Field(
        description="Wheel platform tag, e.g. manylinux_2_28_x86_64."
    )


class Serve(_Model):
    """How workers reach the mirror's web directory: the folder itself, nginx over HTTP, or an
    S3-compatible bucket that the mirror folder (on this machine) is published to."""

    backend: Literal["filesystem", "http", "s3"] = "filesystem"
    listen: Listen | None = Field(None, description="HOST:PORT the web server listens on (http).")
    url: HttpUrl | None = Field(
        None,
        description="Base URL workers use, without /simple (http; s3: the bucket's HTTP URL "
        "with the prefix, public-read or behind a CDN).",
    )
    bucket: BucketName | None = Field(
        None, description="The bucket the mirror is published to (s3)."
    )
    prefix: KeyPrefix = Field(
        "", description="Key prefix in the bucket, without slashes at either end (s3)."
    )
    endpoint_url: HttpUrl | None = Field(
        None, description="The S3 API endpoint of a store other than AWS (MinIO, Ceph RGW...) (s3)."
    )
    region: Region | None = Field(
        None, description="The bucket's region (s3; default: the AWS configuration's)."
    )


class Retries(_Model):
    """How hard olmirror, uv and the mirror's fetcher try one request to the upstream."""

    attempts: int = Field(
        5,
        ge=1,
        le=50,
        description="Tries of one request, the first included. A 429, a 5xx, a reset, cut or "
        "timed-out connection, a failed DNS lookup, or a file whose sha256 is wrong is tried "
        "again; a 404, 401 or 403 never is.",
    )
    backoff: float = Field(
        0.5,
        ge=0,
        le=60,
        description="Seconds before the second try; each later wait doubles (at most 30 s), "
        "half of it drawn at random. A Retry-After from the upstream is honoured instead.",
    )
    within: float = Field(
        120,
        gt=0,
        le=3600,
        description="Seconds one request may go on trying after its first failure (its "
        "waits and later tries): no new try starts past it.",
    )


class UpstreamAuth(_Model):
    """Credentials for a private upstream, read from this machine's environment when olmirror
    runs: the spec names the variables, never the values. Without it, ~/.netrc (or $NETRC)
    is read for the upstream's host, as pip, uv and curl do."""

    username_env: EnvName | None = Field(
        None, description="Variable holding the user name (with password_env)."
    )
    password_env: EnvName | None = Field(
        None, description="Variable holding the password (with username_env)."
    )
    token_env: EnvName | None = Field(
        None,
        description="Variable holding an access token, sent as HTTP basic auth with the user "
        "name __token__ (instead of username_env and password_env).",
    )


class Mirror(_Model):
    host: Name = LOCAL
    engine: Literal["auto", "bandersnatch", "simple"] = Field(
        "auto",
        description="bandersnatch syncs from an upstream with the JSON API and serial headers; "
        "simple fetches the locked files over the simple API alone (any index, any proxy); "
        "auto probes the upstream once and picks.",
    )
    directory: ConfigPath = Field(
        description="bandersnatch's [mirror] directory; the web root is <directory>/web."
    )
    upstream: HttpUrl | None = Field(
        None, description="Index to mirror; null keeps bandersnatch's default."
    )
    file_origins: list[HttpUrl] = Field(
        [],
        description="Origins (scheme://host[:port]) other than the upstream's from which "
        "its pages may have files fetched. With an upstream set, a file elsewhere is refused "
        "unless its origin is listed here; bandersnatch's default upstream keeps any https "
        "origin.",
    )
    ca_file: PathStr | None = Field(
        None,
        description="CA bundle (on this machine) that signs the upstream's certificate; "
        "olmirror uses it to resolve and copies it to the mirror host for bandersnatch.",
    )
    serve: Serve = Serve()
    targets: list[TargetSetting] = Field(min_length=1)
    index_timeout: float = Field(
        30,
        gt=0,
        le=3600,
        description="Seconds the upstream may stay silent on one request while olmirror (and "
        "uv) read its pages; a silent upstream then fails in this time, not minutes.",
    )
    download_timeout: float = Field(
        300,
        gt=0,
        le=86400,
        description="Seconds one file's download may take before olmirror gives up on it "
        "(engine simple); a larger file may take longer, at 50 kB/s, so that a body that "
        "drips or never ends fails, not the apply.",
    )
    retries: Retries = Retries()
    upstream_auth: UpstreamAuth | None = Field(
        None,
        description="Credentials for a private upstream (Artifactory, Nexus, devpi), from "
        "environment variables; without it, ~/.netrc.",
    )


class Allowlist(_Model):
    packages: list[RequirementStr] = []
    requirements: list[PathStr] = Field([], description="requirements files, relative to the spec.")
    from_registry: bool = Field(
        False,
        description="Also mirror the lambdas already in each worker's registry: every "
        "<registry>/<lambda>/requirements.in (or requirements.txt without one) found there.",
    )
    block: list[ProjectName] = []


class Lambda(_Model):
    """One lambda in a worker's registry: <registry>/<name>/, as OpenLambda lays it out."""

    requirements: list[RequirementStr] = Field(
        [], description="The lambda's requirements.in lines; olmirror compiles requirements.txt."
    )
    source: PathStr | None = Field(
        None,
        description="A lambda folder (relative to the spec) whose files (f.py, "
        "requirements.in...) are copied into the registry; its requirements.in is compiled.",
    )


class Worker(_Model):
    name: Name
    host: Name = LOCAL
    path: PathStr = Field(description="The worker directory, as in `ol worker init -p PATH`.")
    image: Annotated[str, StringConstraints(pattern=IMAGE_PATTERN)] = "ol-min"
    requirements: list[RequirementStr] = Field(
        [], description="The registry-level requirements.in (<registry>/requirements.in)."
    )
    lambdas: dict[LambdaName, Lambda] = Field(
        {}, description="Lambdas olmirror writes into the worker's registry, by name."
    )
    state: Literal["running", "stopped"] = "running"
    target: TargetSetting | Literal["detect"] | None = Field(
        None,
        description="The mirror target this worker's Python matches (optional with one target), "
        "or 'detect': the target that the Python of the worker's sandbox (its base image, "
        "<path>/lambda) can install.",
    )
    openlambda: Literal["auto", "main", "legacy"] = Field(
        "auto",
        description="Which OpenLambda runs the worker: 'main' keeps lambdas as <name>.tar.gz "
        "in the registry, 'legacy' (the branch of the pip-mirror procedure) as folders; "
        "'auto' tells them apart by the worker's config.json.",
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="The worker's HTTP port (config.json worker_port; OpenLambda's default "
        "is 5000). Workers on one host need different ports.",
    )
    ol: PathStr | None = Field(
        None, description="This worker's `ol` program, when it is not its host's `ol`."
    )
    stale_packages: Literal["report", "remove"] = Field(
        "report",
        description="Folders of the worker's Pkgs_dir that OpenLambda would reuse but that do "
        "not hold the locked version: 'report' lists them in the plan, 'remove' also deletes "
        "them so the next call installs from the mirror.",
    )


class Spec(_Model):
    """An olmirror spec: the mirror, what it allows, and the workers it serves."""

    model_config = ConfigDict(title="olmirror spec")

    version: Literal[1]
    hosts: dict[Name, Host] = {}
    mirror: Mirror
    allowlist: Allowlist = Allowlist()
    workers: list[Worker] = []

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_an_int(cls, value: object) -> object:
        # Literal[1] alone would take `true` and `1.0`, which equal 1 in Python.
        if type(value) is not int:
            raise ValueError(
                f"version must be the number 1, got {type(value).__name__} {value!r}; "
                "write 'version: 1'"
            )
        return value


def host_config(spec: Spec, name: str) -> Host:
    """The settings of host `name`; `local` needs no entry in the spec."""
    return spec.hosts.get(name, Host()) if name == LOCAL else spec.hosts[name]
