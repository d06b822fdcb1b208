"""olmirror's own state beside the spec (`.olmirror/`): the last plan's resolution and the
index pages kept between runs. Never reviewed (it holds a `.gitignore` of `*`), never used
through a symbolic link, and never needed: a run that cannot use it only does more work.
"""

from __future__ import annotations

import logging
from pathlib import Path

from olmirror.remote.host_program import atomic_write

STATE_FOLDER = ".olmirror"
log = logging.getLogger(__name__)


def state_folder(spec_path: Path) -> Path | None:
    """The state folder of the spec at `spec_path`; None when it is a symbolic link, as
    olmirror keeps its state beside the spec, never where a link points."""
    folder = spec_path.parent / STATE_FOLDER
    if folder.is_symlink():
        log.debug("%s is a symbolic link: olmirror keeps no state through it", folder)
        return None
    return folder


def made_state_folder(spec_path: Path) -> Path | None:
    """The state folder, made (with its `.gitignore`) if it was not; None when it cannot be."""
    folder = state_folder(spec_path)
    if folder is None:
        return None
    try:
        folder.mkdir(exist_ok=True)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            atomic_write(str(ignore), b"*\n", None)
    except OSError as exc:
        log.debug("cannot keep state in %s: %s", folder, exc)
        return None
    return folder
