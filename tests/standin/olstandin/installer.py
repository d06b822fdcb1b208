"""The pip-install admin lambda, run by the image's python3 with an empty environment.

Usage: python3 installer.py ROOT SCRATCH EVENT_JSON

OpenLambda runs go/worker/embedded/packagePullerInstaller.py in a sandbox: chrooted in
ROOT (sock_base_path), SCRATCH (Pkgs_dir/<pkg>) mounted at /host and SCRATCH/tmp at /tmp
(sock.go:179-225), with no environment at all (sock.go:92). So its pip reads only the
sandbox's configuration files, which are ROOT's /etc/xdg/pip/pip.conf, /etc/pip.conf,
/usr/pip.conf and root's ~/.pip/pip.conf and ~/.config/pip/pip.conf. This script runs
this machine's real pip with exactly those files, and prints what the admin lambda
returns: {"Deps": [...], "TopLevel": [...]}.
"""

import json
import os
import pkgutil
import sys

ROOT, SCRATCH, EVENT = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
FILES = os.path.join(SCRATCH, "files")  # /host/files


def sandbox_config_files():
    """pip's configuration files as a chrooted, environment-less pip finds them."""
    from pip._internal.configuration import kinds

    return {
        kinds.GLOBAL: [ROOT + "/etc/xdg/pip/pip.conf", ROOT + "/etc/pip.conf"],
        kinds.SITE: [ROOT + "/usr/pip.conf"],
        kinds.USER: [ROOT + "/root/.pip/pip.conf", ROOT + "/root/.config/pip/pip.conf"],
    }


def configured_index():
    """The index-url the sandbox's configuration gives pip, or None."""
    from pip._internal.configuration import Configuration

    config = Configuration(isolated=False)
    config.load()
    found = dict(config.items())
    return found.get("install.index-url") or found.get("global.index-url")


def pip(argv):
    """Real pip with the sandbox's configuration: (exit code, output)."""
    import contextlib
    import io

    from pip._internal.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(argv)
    return code, out.getvalue()


def install(pkg):
    """packagePullerInstaller.py:71-76 (main) or :70-81 (legacy, at 63e30bc6)."""
    argv = ["install", "--no-deps", pkg, "--cache-dir", SCRATCH + "/tmp/.cache", "-t", FILES]
    legacy = "pip_mirror" in EVENT
    if legacy and not EVENT["pip_mirror"]:  # the inverted test of 63e30bc6, line 72
        argv += [f"--trusted-host={EVENT['mirror_host']}", f"--index-url={EVENT['pip_mirror']}"]
        argv += ["-vvv"]
    elif configured_index() is None:
        # Nothing in the sandbox names an index, so a real worker's pip would go to the
        # public index; a test must never reach it, so this is where the stand-in stops.
        raise SystemExit(
            "no index-url in the sandbox's pip configuration: pip would use the public index"
        )
    code, output = pip(argv)
    with open(os.path.join(SCRATCH, "standin-pip.log"), "w") as log:
        log.write(f"pip {' '.join(argv)}\n{output}")
    if code and not legacy:
        raise SystemExit(f"pip install failed for {pkg} (exit code {code}): {output}")
    return code, output


def deps(dirname):
    """packagePullerInstaller.py:40-63: Requires-Dist names whose marker holds here."""
    from pip._vendor.packaging.markers import UndefinedEnvironmentName
    from pip._vendor.packaging.requirements import Requirement

    path = None
    for name in os.listdir(dirname):  # raises when pip made no /host/files, as the real one
        if name.endswith("-info"):
            path = os.path.join(dirname, name, "METADATA")
    if path is None or not os.path.exists(path):
        return []
    found = set()
    with open(path, encoding="utf-8") as metadata:
        text = metadata.read()
    lines = [line for line in text.splitlines() if line.startswith("Requires-Dist: ")]
    for line in lines:
        requirement = Requirement(line[len("Requires-Dist: ") :])
        try:
            if requirement.marker is None or requirement.marker.evaluate():
                found.add(requirement.name)
        except UndefinedEnvironmentName:  # an `extra` marker, as the real one skips
            continue
    return sorted(found)


def main():
    import pip._internal.configuration as configuration

    configuration.get_configuration_files = sandbox_config_files
    if not EVENT["alreadyInstalled"]:
        install(EVENT["pkg"])
    top = [name for _, name, _ in pkgutil.iter_modules([FILES])]
    print(json.dumps({"Deps": deps(FILES), "TopLevel": top}))


main()
