"""Run on a worker's host by its python3: what Python and C library the worker's sandbox has.

    python3 -c <this file> WORKER_PATH

prints one line of JSON. OpenLambda runs every lambda and every pip install chrooted in
the worker's sock_base_path (<worker>/lambda, a dump of its Docker image), as
`chroot <root> python3` with no environment (go/worker/sandbox/sock.go:70,92), so
`python3` is the image's /usr/bin/python3 or /bin/python3, and the C library the image's
libc.so.6, not the host's. They are read from the image's files, without running them:
the version in python3's name (python3 -> python3.10), and the version string glibc
carries. Links are followed as the chroot would, never out of the image.

Plain standard library: the source is sent to the host as it is.
"""

import json
import os
import platform
import re
import sys

MAX_LIBC = 16 << 20
ELF_MACHINES = {0x3E: "x86_64", 0xB7: "aarch64", 0x03: "i686", 0x28: "armv7l", 0xF3: "riscv64"}


def follow(base, path):
    """(the file `path` of the image is, or None; every name on the way), as a chroot at
    `base` resolves it: an absolute link starts at `base`, and '..' stops there."""
    names = []
    for _ in range(32):
        full = os.path.join(base, path.lstrip("/"))
        names.append(os.path.basename(path))
        if not os.path.islink(full):
            return (full if os.path.isfile(full) else None), names
        target = os.readlink(full)
        joined = target if target.startswith("/") else os.path.join(os.path.dirname(path), target)
        path = os.path.normpath("/" + joined)
    return None, names


def python(base):
    for candidate in ("/usr/bin/python3", "/bin/python3"):
        full, names = follow(base, candidate)
        versions = [m[1] for m in (re.fullmatch(r"python(3\.\d+)", n) for n in names) if m]
        if full and versions:
            return versions[-1]
    return None


def _elf_machine(data):
    if data[:4] != b"\x7fELF" or len(data) < 20:
        return None
    order = "little" if data[5] == 1 else "big"
    return ELF_MACHINES.get(int.from_bytes(data[18:20], order))


def libc(base):
    """(machine, [name, version]) of the image's C library, or None."""
    for libdir in ("/usr/lib", "/lib", "/usr/lib64", "/lib64"):
        try:
            names = sorted(os.listdir(os.path.join(base, libdir.lstrip("/"))))
        except OSError:
            continue
        for name in names:
            musl = re.fullmatch(r"ld-musl-(\w+)\.so\.1", name)
            if musl:
                return musl[1], ["musl", ""]
        for sub in [n for n in names if n.endswith("-linux-gnu")] + [""]:
            full, _ = follow(base, os.path.join(libdir, sub, "libc.so.6"))
            if not full:
                continue
            with open(full, "rb") as handle:
                data = handle.read(MAX_LIBC)
            found = re.search(rb"GNU C Library[^\n]*?version (\d+)\.(\d+)", data)
            if found:
                machine = sub.split("-")[0] if sub else _elf_machine(data)
                return machine, ["glibc", f"{int(found[1])}.{int(found[2])}"]
    return None


def main(worker):
    base = os.path.join(worker, "lambda")
    try:
        with open(os.path.join(worker, "config.json"), "rb") as handle:
            setting = json.loads(handle.read()).get("sock_base_path")
        if isinstance(setting, str) and setting:
            base = setting
    except (OSError, ValueError, AttributeError):
        pass
    facts = {"base": base, "exists": os.path.isdir(base), "host_machine": platform.machine()}
    if facts["exists"]:
        facts["python"] = python(base)
        found = libc(base)
        facts["machine"], facts["libc"] = found if found else (None, None)
    print(json.dumps(facts))


if __name__ == "__main__":
    main(sys.argv[1])
