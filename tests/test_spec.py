"""Valid specs load, and their paths resolve the way an operator expects.

Local paths resolve against the spec file's folder (never the working directory) and
expand `~`; paths on remote hosts must be absolute and are kept exactly as written;
the `local` host exists without an entry; every example playbook validates and names
the JSON Schema for editors.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path

import pytest

from olmirror.cli import main
from olmirror.errors import SpecError
from olmirror.lock.requirement_sets import requirement_sets
from olmirror.spec import LOCAL, LoadedSpec, load_spec
from olmirror.spec.yaml_reader import MAX_SPEC_BYTES

REPO = Path(__file__).resolve().parent.parent
PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yaml"))
SCHEMA = REPO / "schemas" / "olmirror.schema.json"
SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")

MINIMAL = """\
version: 1
mirror:
  directory: /srv/pypi
  targets: [{python: "3.12", platform: manylinux_2_28_x86_64}]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder for the spec, with the working directory and HOME elsewhere."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def _load(folder: Path, text: str, name: str = "olmirror.yaml") -> LoadedSpec:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return load_spec(path)


def _error(folder: Path, text: str) -> str:
    with pytest.raises(SpecError) as caught:
        _load(folder, text)
    return str(caught.value)


# --- valid specs ------------------------------------------------------------------------------


def test_a_minimal_spec_loads_with_its_defaults(project: Path) -> None:
    loaded = _load(project, MINIMAL)
    spec = loaded.spec
    assert spec.version == 1
    assert spec.hosts == {}
    assert spec.mirror.host == LOCAL
    assert spec.mirror.engine == "auto"
    assert spec.mirror.directory == "/srv/pypi"
    assert spec.mirror.upstream is None
    assert spec.mirror.serve.backend == "filesystem"
    assert spec.mirror.serve.listen is None and spec.mirror.serve.url is None
    assert [(t.python, t.platform) for t in spec.mirror.targets] == [
        ("3.12", "manylinux_2_28_x86_64")
    ]
    assert spec.allowlist.packages == [] and spec.allowlist.block == []
    assert spec.workers == []


def test_the_design_sketch_loads(project: Path) -> None:
    """The whole shape: remote mirror served over http, workers on several hosts."""
    loaded = _load(
        project,
        """\
        # yaml-language-server: $schema=../schemas/olmirror.schema.json
        version: 1
        hosts:
          mirror1: {address: 10.0.0.5, user: ol, identity_file: ~/.ssh/id_ed25519, become: true}
          worker-a: {address: 10.0.0.11, user: ol, port: 2222}
          worker-b: {ssh_alias: worker-b}
        mirror:
          host: mirror1
          engine: bandersnatch
          directory: /srv/pypi
          upstream: null
          serve: {backend: http, listen: "0.0.0.0:8080", url: "http://10.0.0.5:8080"}
          targets:
            - {python: "3.12", platform: manylinux_2_28_x86_64}
            - {python: "3.10", platform: manylinux_2_17_aarch64}
        allowlist:
          packages: ["requests>=2.31", "numpy==1.26.4"]
          requirements: [requirements/ml.in]
          block: ["some-package"]
        workers:
          - name: worker-a
            host: worker-a
            path: /opt/ol/default-ol
            image: ol-min
            requirements: ["pandas==2.2.2", "scrapy"]
            state: running
            target: {python: "3.12", platform: manylinux_2_28_x86_64}
          - name: worker-b
            host: worker-b
            path: /opt/ol/default-ol
            state: stopped
            target: {python: "3.10", platform: manylinux_2_17_aarch64}
        """,
    )
    spec = loaded.spec
    assert set(spec.hosts) == {"mirror1", "worker-a", "worker-b"}
    assert spec.hosts["mirror1"].become is True
    assert spec.hosts["worker-a"].port == 2222
    assert spec.hosts["worker-b"].ssh_alias == "worker-b"
    assert spec.hosts["worker-b"].host_key_policy == "strict"
    assert spec.mirror.serve.url == "http://10.0.0.5:8080"
    assert [t.python for t in spec.mirror.targets] == ["3.12", "3.10"]
    assert [(w.name, w.host, w.state) for w in spec.workers] == [
        ("worker-a", "worker-a", "running"),
        ("worker-b", "worker-b", "stopped"),
    ]
    # Two workers may share a path when they are on different hosts.
    assert spec.workers[0].path == spec.workers[1].path == "/opt/ol/default-ol"
    assert spec.workers[1].image == "ol-min"


def test_loaded_spec_knows_its_file_and_digest(project: Path) -> None:
    loaded = _load(project, MINIMAL)
    path = project / "olmirror.yaml"
    assert loaded.path == path.resolve()
    assert loaded.base_dir == project.resolve()
    assert loaded.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    changed = _load(project, MINIMAL + "workers: []\n")
    assert changed.digest != loaded.digest


@pytest.mark.parametrize(
    "requirement",
    [
        "six",
        "six==1.16.0",
        "requests[socks,security]>=2.31,<3",
        "numpy==1.26.4; python_version >= '3.9'",
        'pywin32==306 ; sys_platform == "win32"',
        "Django~=4.2.0",
        "zope.interface===6.0",
    ],
)
def test_pep508_requirements_are_accepted(project: Path, requirement: str) -> None:
    quoted = "'" + requirement.replace("'", "''") + "'"  # a YAML single-quoted string
    text = MINIMAL + "workers:\n  - name: a\n    path: /opt/ol/a\n    requirements:\n"
    text += f"      - {quoted}\n"
    loaded = _load(project, text)
    assert loaded.spec.workers[0].requirements == [requirement]


@pytest.mark.parametrize(
    "platform",
    [
        "manylinux_2_28_x86_64",
        "manylinux_2_17_aarch64",
        "manylinux2014_x86_64",
        "musllinux_1_2_x86_64",
        "macosx_11_0_arm64",
        "win_amd64",
        "win32",
        "linux_x86_64",
        "any",
    ],
)
def test_wheel_platform_tags_are_accepted(project: Path, platform: str) -> None:
    loaded = _load(project, MINIMAL.replace("manylinux_2_28_x86_64", platform))
    assert loaded.spec.mirror.targets[0].platform == platform


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("0.0.0.0:8080", "http://10.0.0.5:8080"),
        ("[::]:8080", "http://[fd00::5]:8080"),
        ("127.0.0.1:80", "https://mirror.example.org/pypi/"),
        ("localhost:8080", "http://localhost:8080"),
        ("mirror.example.org:443", "https://mirror.example.org"),
    ],
)
def test_listen_addresses_and_urls_are_accepted(project: Path, listen: str, url: str) -> None:
    text = MINIMAL + f"  serve: {{backend: http, listen: '{listen}', url: '{url}'}}\n"
    serve = _load(project, text).spec.mirror.serve
    assert (serve.listen, serve.url) == (listen, url)


def test_quoted_and_tagged_python_versions_stay_strings(project: Path) -> None:
    text = MINIMAL.replace('python: "3.12"', "python: '3.10'")
    text = text.replace("targets: [", "targets: [{python: !!str 3.11, platform: any}, ")
    loaded = _load(project, text)
    assert [t.python for t in loaded.spec.mirror.targets] == ["3.11", "3.10"]


def test_plain_anchors_and_merge_keys_are_fine(project: Path) -> None:
    """Aliases are refused only when they explode; ordinary reuse keeps working."""
    loaded = _load(
        project,
        MINIMAL
        + textwrap.dedent(
            """\
            workers:
              - &base {name: a, path: /opt/ol/a, requirements: &reqs [six==1.16.0, idna==3.7]}
              - <<: *base
                name: b
                path: /opt/ol/b
                port: 5001
              - {name: c, path: /opt/ol/c, port: 5002, requirements: *reqs}
            """
        ),
    )
    workers = loaded.spec.workers
    assert [(w.name, w.path) for w in workers] == [
        ("a", "/opt/ol/a"),
        ("b", "/opt/ol/b"),
        ("c", "/opt/ol/c"),
    ]
    assert all(w.requirements == ["six==1.16.0", "idna==3.7"] for w in workers)


def test_a_utf8_byte_order_mark_is_fine(project: Path) -> None:
    path = project / "olmirror.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_spec(path).spec.mirror.directory == "/srv/pypi"


def test_a_spec_just_under_the_size_limit_loads(project: Path) -> None:
    path = project / "olmirror.yaml"
    padding = MAX_SPEC_BYTES - len(MINIMAL) - 3
    path.write_text(MINIMAL + "# " + "x" * padding + "\n")
    assert path.stat().st_size == MAX_SPEC_BYTES
    assert load_spec(path).spec.version == 1
    path.write_text(MINIMAL + "# " + "x" * (padding + 1) + "\n")
    with pytest.raises(SpecError, match="a spec is at most 1 MiB"):
        load_spec(path)


# --- local paths: relative to the spec's folder, with ~ expanded -----------------------------


def test_relative_local_paths_resolve_against_the_spec_folder_not_the_cwd(
    project: Path,
) -> None:
    (project / "certs").mkdir()
    (project / "certs" / "upstream-ca.pem").write_text("a CA bundle\n")
    loaded = _load(
        project,
        """\
        version: 1
        hosts:
          local: {ol: bin/ol, state_dir: state}
          remote: {address: 10.0.0.5, identity_file: keys/id_ed25519, known_hosts: ./known}
        mirror:
          directory: mirror
          ca_file: certs/upstream-ca.pem
          targets: [{python: "3.12", platform: any}]
        allowlist:
          requirements: [requirements/ml.in, ../shared/base.in]
        workers:
          - {name: a, path: ./workers/a}
          - {name: b, host: local, path: workers/../workers/b/, port: 5001}
        """,
    )
    spec, base = loaded.spec, project.resolve()
    assert Path.cwd() != base
    assert spec.mirror.directory == str(base / "mirror")
    assert spec.mirror.ca_file == str(base / "certs/upstream-ca.pem")
    assert [w.path for w in spec.workers] == [str(base / "workers/a"), str(base / "workers/b")]
    assert spec.hosts["local"].ol == str(base / "bin/ol")
    assert spec.hosts["local"].state_dir == str(base / "state")
    assert spec.allowlist.requirements == [
        str(base / "requirements/ml.in"),
        str(base.parent / "shared/base.in"),
    ]
    # Files olmirror reads on this machine resolve locally, even for a remote host.
    assert spec.hosts["remote"].identity_file == str(base / "keys/id_ed25519")
    assert spec.hosts["remote"].known_hosts == str(base / "known")


def test_a_spec_named_relative_to_the_cwd_still_resolves_against_its_own_folder(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "sub").mkdir()
    (project / "sub" / "olmirror.yaml").write_text(MINIMAL.replace("/srv/pypi", "mirror"))
    monkeypatch.chdir(project)
    loaded = load_spec("sub/olmirror.yaml")
    assert loaded.spec.mirror.directory == str(project.resolve() / "sub" / "mirror")


def test_a_bare_ol_program_name_is_left_for_the_path_search(project: Path) -> None:
    loaded = _load(project, MINIMAL + "hosts:\n  local: {ol: ol}\n")
    assert loaded.spec.hosts["local"].ol == "ol"


def test_tilde_expands_for_local_paths(project: Path) -> None:
    home = Path.home()
    assert home == project.parent / "home"  # the fixture's HOME, not the real one
    (home / "certs").mkdir(parents=True)
    (home / "certs" / "ca.pem").write_text("a CA bundle\n")
    loaded = _load(
        project,
        """\
        version: 1
        hosts:
          local: {state_dir: ~/.local/state/olmirror}
          remote: {address: 10.0.0.5, identity_file: ~/.ssh/id_ed25519}
        mirror:
          directory: ~/olmirror/mirror
          ca_file: ~/certs/ca.pem
          targets: [{python: "3.12", platform: any}]
        allowlist:
          requirements: [~/requirements/ml.in]
        workers:
          - {name: a, path: ~/olmirror/worker}
        """,
    )
    spec = loaded.spec
    assert spec.mirror.directory == str(home / "olmirror/mirror")
    assert spec.mirror.ca_file == str(home / "certs/ca.pem")
    assert spec.workers[0].path == str(home / "olmirror/worker")
    assert spec.hosts["local"].state_dir == str(home / ".local/state/olmirror")
    assert spec.hosts["remote"].identity_file == str(home / ".ssh/id_ed25519")
    assert spec.allowlist.requirements == [str(home / "requirements/ml.in")]


def test_a_validated_spec_has_no_relative_local_path_left(project: Path) -> None:
    loaded = _load(
        project,
        MINIMAL.replace("/srv/pypi", "m")
        + "workers: [{name: a, path: w}, {name: b, path: ~/w, port: 5001}]\n",
    )
    paths = [loaded.spec.mirror.directory, *(w.path for w in loaded.spec.workers)]
    assert all(Path(p).is_absolute() for p in paths), paths


# --- remote paths: absolute, and kept exactly as written --------------------------------------

REMOTE = """\
version: 1
hosts:
  m1: {address: 10.0.0.5}
  w1: {address: 10.0.0.11, ol: /usr/local/bin/ol, state_dir: /var/lib/olmirror}
mirror:
  host: m1
  directory: /srv/pypi
  targets: [{python: "3.12", platform: any}]
workers:
  - {name: a, host: w1, path: /opt/ol/default-ol}
"""


def test_remote_paths_are_kept_as_written(project: Path) -> None:
    text = REMOTE.replace("/opt/ol/default-ol", "/opt/ol/../ol/default-ol/")
    text = text.replace("  directory: /srv/pypi\n", "  directory: /srv/pypi\n  ca_file: ca.pem\n")
    (project / "ca.pem").write_text("a CA bundle\n")
    spec = _load(project, text).spec
    assert spec.mirror.directory == "/srv/pypi"
    # The CA file is read on this machine, so it resolves here even for a remote mirror.
    assert spec.mirror.ca_file == str(project.resolve() / "ca.pem")
    assert spec.workers[0].path == "/opt/ol/../ol/default-ol/"
    assert spec.hosts["w1"].ol == "/usr/local/bin/ol"
    assert spec.hosts["w1"].state_dir == "/var/lib/olmirror"


def test_a_bare_ol_name_is_fine_on_a_remote_host(project: Path) -> None:
    spec = _load(project, REMOTE.replace("ol: /usr/local/bin/ol", "ol: ol")).spec
    assert spec.hosts["w1"].ol == "ol"


@pytest.mark.parametrize(
    ("written", "replaced", "line", "column", "field", "what"),
    [
        ("path: /opt/ol/default-ol", "path: opt/ol", 10, 31, "workers[0].path", "path"),
        ("path: /opt/ol/default-ol", "path: ~/ol", 10, 31, "workers[0].path", "path"),
        ("path: /opt/ol/default-ol", "path: ./ol", 10, 31, "workers[0].path", "path"),
        ("directory: /srv/pypi", "directory: srv", 7, 14, "mirror.directory", "mirror directory"),
        ("ol: /usr/local/bin/ol", "ol: bin/ol", 4, 32, "hosts.w1.ol", "ol program"),
        (
            "state_dir: /var/lib/olmirror",
            "state_dir: state",
            4,
            62,
            "hosts.w1.state_dir",
            "state_dir",
        ),
    ],
    ids=["worker-path", "worker-path-tilde", "worker-path-dot", "mirror", "ol", "state-dir"],
)
def test_remote_paths_must_be_absolute(
    project: Path, written: str, replaced: str, line: int, column: int, field: str, what: str
) -> None:
    assert written in REMOTE
    message = _error(project, REMOTE.replace(written, replaced))
    value = replaced.split(": ", 1)[1]
    assert message.startswith(f"{project / 'olmirror.yaml'}:{line}:{column}: {field}: ")
    assert f"{what} {value!r} on remote host" in message
    assert "must be an absolute path; relative paths are only resolved for the local host" in (
        message
    )


# --- the implicit local host ------------------------------------------------------------------


def test_the_local_host_exists_without_an_entry(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        MINIMAL
        + "workers:\n  - {name: a, path: /opt/ol/a}\n  - {name: b, host: local, path: b, port: 1}\n"
    )
    spec = _load(project, text).spec
    assert LOCAL not in spec.hosts
    assert spec.mirror.host == LOCAL
    assert [w.host for w in spec.workers] == [LOCAL, LOCAL]
    assert spec.workers[1].path == str(project.resolve() / "b")
    assert main(["validate", "-f", str(project / "olmirror.yaml")]) == 0
    assert capsys.readouterr().out.endswith("valid (1 host, 2 workers, 1 target)\n")


def test_the_local_host_may_have_an_entry_for_its_settings(project: Path) -> None:
    spec = _load(project, MINIMAL + "hosts:\n  local: {ol: /usr/bin/ol, state_dir: /x}\n").spec
    assert spec.hosts[LOCAL].ol == "/usr/bin/ol"
    assert spec.hosts[LOCAL].state_dir == "/x"
    assert spec.mirror.host == LOCAL


@pytest.mark.parametrize(
    "setting", ["become: true", "port: 2222", "host_key_policy: accept-new", "known_hosts: k"]
)
def test_the_local_host_refuses_settings_it_would_ignore(project: Path, setting: str) -> None:
    field = setting.partition(":")[0]
    message = _error(project, MINIMAL + f"hosts:\n  local: {{{setting}}}\n")
    assert f"hosts.local.{field}: the 'local' host is this machine and takes no {field}" in message


def test_the_local_host_is_named_among_the_defined_hosts(project: Path) -> None:
    text = (
        MINIMAL + "hosts:\n  w1: {address: 10.0.0.5}\nworkers:\n  - {name: a, host: w2, path: /x}\n"
    )
    message = _error(project, text)
    assert "workers[0].host: 'w2' is not a defined host (defined: local, w1)" in message


@pytest.mark.parametrize("field", ["address", "ssh_alias", "user", "identity_file"])
def test_the_local_host_takes_no_connection_settings(project: Path, field: str) -> None:
    message = _error(project, MINIMAL + f"hosts:\n  local: {{{field}: x}}\n")
    assert f"hosts.local.{field}: the 'local' host is this machine and takes no {field}" in (
        message
    )


# --- messages name the file as it was given ---------------------------------------------------


def test_messages_name_the_spec_as_given_on_the_command_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "olmirror.yaml").write_text(MINIMAL + "workers: [{name: a}]\n")
    monkeypatch.chdir(project)
    assert main(["validate"]) == 1  # the default file: ./olmirror.yaml
    err = capsys.readouterr().err
    assert err.startswith("error: olmirror.yaml:5:11: workers[0].path: required key 'path'")


# --- the example playbooks --------------------------------------------------------------------


def test_there_are_playbooks() -> None:
    assert PLAYBOOKS, "playbooks/*.yaml is empty"
    assert REPO / "playbooks" / "quickstart.yaml" in PLAYBOOKS


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.name for p in PLAYBOOKS])
def test_every_playbook_names_the_schema_for_editors(playbook: Path) -> None:
    first = playbook.read_text().splitlines()[0]
    match = SCHEMA_LINE.match(first)
    assert match, f"{playbook.name}: first line is {first!r}, not a yaml-language-server line"
    assert (playbook.parent / match.group(1)).resolve() == SCHEMA


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.name for p in PLAYBOOKS])
def test_every_playbook_validates(
    playbook: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")  # playbooks name their files relative to themselves
    loaded = load_spec(playbook)
    assert loaded.spec.version == 1
    assert main(["validate", "-f", str(playbook)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{playbook}: valid (")
    assert captured.err == ""


def test_a_missing_ca_file_is_named_with_its_position(project: Path) -> None:
    text = REMOTE.replace("  directory: /srv/pypi\n", "  directory: /srv/pypi\n  ca_file: no.pem\n")
    with pytest.raises(
        SpecError, match=r"olmirror.yaml:\d+:\d+: mirror.ca_file: .*no.pem does not"
    ):
        _load(project, text)


def test_two_workers_on_one_host_need_their_own_ports(project: Path) -> None:
    text = MINIMAL + "workers:\n  - {name: a, path: /opt/ol/a}\n  - {name: b, path: /opt/ol/b}\n"
    with pytest.raises(SpecError) as raised:
        _load(project, text)
    message = str(raised.value)
    assert "workers[1].name: worker 'b' would listen on port 5000 of host 'local'" in message
    assert "give each worker on a host its own port (workers[].port)" in message
    fixed = text.replace("path: /opt/ol/b}", "path: /opt/ol/b, port: 5001}")
    assert [w.port for w in _load(project, fixed).spec.workers] == [None, 5001]


def test_each_requirement_set_names_the_spec_once(tmp_path: Path) -> None:
    """A set's origin and each line's source name the spec file once, then the field."""
    loaded = _load(
        tmp_path,
        """
        version: 1
        mirror:
          directory: /srv/pypi
          targets: [{python: "3.11", platform: manylinux_2_17_x86_64}]
        allowlist: {packages: [six==1.16.0]}
        workers:
          - name: w
            path: /opt/ol/w
            requirements: [omega==1.2]
            lambdas: {etl: {requirements: [theta==1.0]}}
        """,
    )
    sets = {s.name: s for s in requirement_sets(loaded, {})}
    assert sets["allowlist"].origin == "the allowlist (olmirror.yaml: allowlist.packages)"
    assert sets["worker:w"].origin == "worker 'w' (olmirror.yaml: workers[0].requirements)"
    etl = sets["lambda:w/etl"]
    assert etl.origin == (
        "lambda 'etl' of worker 'w' (olmirror.yaml: workers[0].lambdas.etl.requirements)"
    )
    assert etl.sources == ("olmirror.yaml: workers[0].lambdas.etl.requirements[0]",)
