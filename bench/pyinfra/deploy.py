"""pyinfra's side of the fan-out: the same convergence as ../ansible/playbook.yml.

The registry directory, registry/requirements.in and registry/requirements.txt (the same
bytes the playbook writes, so either tool sees the other's result as converged), and the
`pip_mirror` and `mirror_host` keys merged into the config.json `ol worker init` wrote.
The merge is a custom operation over the FileContents fact, as a pyinfra user writes one
for a JSON file: it compares values, so a no-op run and `--dry` report no change.

Run by bench/fanout.py with a generated inventory whose host data names `worker_path`,
`pip_mirror`, `mirror_host` and `target`.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from io import StringIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationError, operation
from pyinfra.facts.files import FileContents
from pyinfra.operations import files


@operation()
def merge_json(path: str, keys: dict[str, str]) -> Generator[FileUploadCommand, None, None]:
    """Set `keys` in the JSON object at `path`, keeping every other key; no change when
    they already hold these values. Fails on a missing file, as the playbook's slurp does."""
    lines = host.get_fact(FileContents, path=path)
    if lines is None:
        raise OperationError(f"{path}: no such file")
    current = json.loads("\n".join(lines))
    merged = {**current, **keys}
    if merged == current:
        host.noop(f"{path} already has {', '.join(keys)}")
        return
    text = json.dumps(merged, indent=2, sort_keys=True) + "\n"
    yield FileUploadCommand(StringIO(text), path, remote_temp_filename=host.get_temp_filename(path))


worker = host.data.worker_path
files.directory(name="Registry directory", path=f"{worker}/registry", mode="755")
files.put(
    name="registry/requirements.in",
    src=StringIO(f"# Managed by Ansible: worker {host.name}. Edits are overwritten.\n"),
    dest=f"{worker}/registry/requirements.in",
    mode="644",
)
files.put(
    name="registry/requirements.txt",
    src=StringIO(
        "#\n"
        f"# Pinned for target {host.data.target}; every line is an exact version in the mirror.\n"
        "#\n"
    ),
    dest=f"{worker}/registry/requirements.txt",
    mode="644",
)
merge_json(
    name="Merge pip_mirror and mirror_host into config.json",
    path=f"{worker}/config.json",
    keys={"pip_mirror": host.data.pip_mirror, "mirror_host": host.data.mirror_host},
)
