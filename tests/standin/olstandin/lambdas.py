"""A running worker's lambda manager: handler puller, package puller, import cache, calls.

Each function names the OpenLambda code it copies: go/... at main a288ce1e, src/... at
63e30bc6 (the older generation). Sandboxes are not containers here: a sandbox is the
image's python3 run with an empty environment, its paths mapped into the image folder.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from olstandin import blob, image

INSTALLER = Path(__file__).resolve().parent / "installer.py"
NAME = re.compile(r"^[A-Za-z0-9.\-_]+$")  # HandlerNameRegex, go/common/lambdaConfig.go:20


class LambdaError(Exception):
    pass


def normalize(pkg: str) -> str:
    """NormalizePkg, go/worker/lambda/packages/packagePuller.go:77-79."""
    return pkg.lower().replace("_", "-")


def registry_folder(setting: str) -> Path:
    """The older generation's registry folder: a plain path (or file://, as main writes it)."""
    if setting.startswith(("http://", "https://", "s3://", "gs://")):
        raise LambdaError(f"the stand-in's older worker reads only a folder, not {setting!r}")
    return Path(setting.removeprefix("file://").partition("?")[0])


def requirement_lines(code: Path) -> list[str]:
    """parseMeta's reading of requirements.txt, lambdaFunction.go:109-127."""
    path = code / "requirements.txt"
    if not path.exists():
        return []
    installs = []
    for text in path.read_text().splitlines():
        pkg = text.replace(" ", "").split("#")[0]
        if pkg:
            installs.append(normalize(pkg))
    return installs


@dataclass
class Package:
    name: str
    deps: list[str] = field(default_factory=list)
    top: list[str] = field(default_factory=list)
    installed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Manager:
    """One worker's lambdas and packages, for the life of its process."""

    def __init__(self, config: dict, legacy: bool):
        self.config, self.legacy = config, legacy
        self.root = Path(config["sock_base_path"])
        # Pkgs_dir has no json tag (config.go:47), so its key is "Pkgs_dir".
        self.pkgs_dir = Path(config["Pkgs_dir"])
        self.code_dirs = Path(config["worker_dir"]) / "code"
        self.packages: dict[str, Package] = {}
        self.last_pull: dict[str, tuple[float, Path]] = {}  # name -> (when, code dir)
        self.dir_cache: dict[str, tuple[float, Path]] = {}  # name -> (blob's ModTime, dir)
        self._store: blob.FileStore | blob.S3Store | None = None
        self.guard = threading.Lock()
        self.counter = 0

    # -- handler puller ---------------------------------------------------------------
    def _code_dir(self, name: str) -> Path:
        with self.guard:
            self.counter += 1
            return self.code_dirs / f"{self.counter}-{name}"

    def store(self) -> blob.FileStore | blob.S3Store:
        """NewHandlerPuller's bucket, opened once (lambdaManager.go:117, handlerPuller.go:36-64)."""
        with self.guard:
            if self._store is None:
                try:
                    self._store = blob.open_store(self.config.get("registry") or "")
                except Exception as exc:  # :56-58
                    raise LambdaError(f"failed to open blob bucket: {exc}") from None
            return self._store

    def pull(self, name: str) -> Path:
        """pullHandlerIfStale's cache (lambdaFunction.go:140-152), then HandlerPuller.Pull."""
        if not NAME.match(name):  # handlerPuller.go:70-72
            raise LambdaError(f"invalid function name {name!r}")
        cache_ms = self.config.get("registry_cache_ms", 5000)
        last = self.last_pull.get(name)
        if last and (time.time() - last[0]) * 1000 < cache_ms:  # lambdaFunction.go:146
            return last[1]
        code = self._pull_legacy(name) if self.legacy else self._pull_blob(name)
        self.last_pull[name] = (time.time(), code)
        return code

    def _pull_blob(self, name: str) -> Path:
        """HandlerPuller.Pull, handlerPuller.go:66-99 (main a288ce1e)."""
        key = name + ".tar.gz"  # :74, common.LambdaFileExtension
        store = self.store()
        version = store.mod_time(key)  # :76, bucket.Attributes(...).ModTime
        cached = self.dir_cache.get(name)
        if version is not None and cached and cached[0] == version:  # :77-81
            return cached[1]
        try:
            data = store.read(key)  # pullFromBlob, :101-109
        except blob.StoreError as exc:
            raise LambdaError(str(exc)) from None
        if data is None:  # errNotFound404, :92-98
            registry = json.dumps(self.config.get("registry") or "")
            raise LambdaError(
                f"lambda {json.dumps(name)} not found in blob store "
                f"(bucket={registry}, key={json.dumps(key)})"
            )
        target = self._code_dir(name)
        target.mkdir(parents=True)  # :125-128
        with tempfile.NamedTemporaryFile(prefix=name + "_blob") as tmp:  # :112-123
            tmp.write(data)
            tmp.flush()
            argv = ["tar", "-xzf", tmp.name, "--directory", str(target)]  # :130
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LambdaError(f"tar extract failed: {done.stderr.strip()}")  # :131-133
        if cached and cached[1] != target:  # putCache, :149-154
            shutil.rmtree(cached[1], ignore_errors=True)
        self.dir_cache[name] = (version or 0.0, target)
        return target

    def _pull_legacy(self, name: str) -> Path:
        """Pull at 63e30bc6: src/worker/lambda/handlerPuller.go:109-155, a folder registry."""
        folder = registry_folder(self.config.get("registry") or "")
        candidates = [folder / f"{name}.tar.gz", folder / f"{name}.py", folder / f"{name}.bin"]
        candidates.append(folder / name)  # :140-145
        source = next((c for c in candidates if c.exists()), None)
        if source is None:
            where = ", ".join(map(str, candidates))  # :154
            raise LambdaError(f"lambda not found at any of these locations: {where}")
        mtime = source.stat().st_mtime
        cached = self.dir_cache.get(name)
        if cached and cached[0] == mtime:
            return cached[1]
        target = self._code_dir(name)
        target.mkdir(parents=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        elif source.name.endswith(".tar.gz"):
            argv = ["tar", "-xzf", str(source), "--directory", str(target)]
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise LambdaError(f"tar extract failed: {done.stderr.strip()}")
        else:
            shutil.copyfile(source, target / ("f.py" if source.suffix == ".py" else "f.bin"))
        self.dir_cache[name] = (mtime, target)
        return target

    # -- package puller -----------------------------------------------------------------
    def get_pkg(self, pkg: str) -> Package:
        """GetPkg, packagePuller.go:123-148: one install per normalized name, ever."""
        pkg = normalize(pkg)
        with self.guard:
            package = self.packages.setdefault(pkg, Package(pkg))
        with package.lock:
            if not package.installed:
                self._sandbox_install(package)
                package.installed = True
        return package

    def _sandbox_install(self, package: Package) -> None:
        """sandboxInstall, packagePuller.go:151-225: an existing Pkgs_dir/<pkg> counts as
        installed; a failed install removes it."""
        scratch = self.pkgs_dir / package.name
        already = scratch.exists()
        if not already:
            scratch.mkdir(mode=0o700)
        (scratch / "tmp").mkdir(exist_ok=True)  # sock.go:208
        event: dict = {"pkg": package.name, "alreadyInstalled": already}
        if self.legacy:  # src/worker/lambda/packages/packagePuller.go:188-190 at 63e30bc6
            event |= {"pip_mirror": self.config.get("pip_mirror", ""),
                      "mirror_host": self.config.get("mirror_host", "")}  # fmt: skip
        argv = [image.python3(self.root), "-I", str(INSTALLER), str(self.root), str(scratch)]
        done = subprocess.run(
            [*argv, json.dumps(event)], capture_output=True, text=True, env={}, check=False
        )
        if done.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise LambdaError(f"install lambda failed for {package.name}: {done.stderr[-2000:]}")
        meta = json.loads(done.stdout.strip().splitlines()[-1])
        package.deps = [normalize(dep) for dep in meta["Deps"]]
        package.top = meta["TopLevel"]

    def install_recursive(self, installs: list[str]) -> list[str]:
        """InstallRecursive, packagePuller.go:82-120: deps by name, unless already listed
        (the list is keyed by the text before '==', not normalized)."""
        installs = list(installs)
        seen = {install.split("==")[0] for install in installs}
        i = 0
        while i < len(installs):
            for dep in self.get_pkg(installs[i]).deps:
                if dep not in seen:
                    installs.append(dep)
                    seen.add(dep)
            i += 1
        return installs

    # -- import cache -------------------------------------------------------------------
    def _zygote_chain(self, installs: list[str]) -> list[list[str]]:
        """The Zygote a lambda forks from, as the packages of each node from the root down:
        ImportCacheNode.Lookup (importCache.go:338-365) and createSandboxInNode (:284-330),
        which installs each node's packages with InstallRecursive."""
        if self.config.get("features", {}).get("import_cache", "") == "":
            return []
        tree = self.config.get("import_cache_tree") or ""
        if isinstance(tree, str):
            if not tree:
                return []
            tree = json.loads(tree if tree.startswith("{") else Path(tree).read_text())

        def lookup(node: dict, chain: list[dict]) -> list[dict] | None:
            if any(pkg not in installs for pkg in node.get("packages", [])):
                return None
            for child in node.get("children", []):
                found = lookup(child, [*chain, child])
                if found is not None:
                    return found
            return chain

        return [node.get("packages", []) for node in lookup(tree, []) or []]

    # -- a call -------------------------------------------------------------------------
    def invoke(self, name: str, body: bytes) -> tuple[int, bytes]:
        """pullHandlerIfStale (lambdaFunction.go:140-221): every requirements.txt line is
        installed with GetPkg, not recursively; then the handler runs in a sandbox whose
        sys.path has /packages/<pkg>/files for each (sockPool.go:125-134)."""
        code = self.pull(name)
        if not (code / "f.py").exists():
            raise LambdaError(f"cannot determine runtime: no f.py or f.bin found in {code}")
        installs = requirement_lines(code)
        for pkg in installs:
            self.get_pkg(pkg)
        paths: list[str] = []
        for node_packages in self._zygote_chain(installs):
            for pkg in self.install_recursive(node_packages):
                _insert(paths, pkg)
        for pkg in installs:
            _insert(paths, pkg)
        return self._run(code, paths, body)

    def _run(self, code: Path, packages: list[str], body: bytes) -> tuple[int, bytes]:
        """The handler, as server_common.py's handle_func calls it: f(event), JSON out."""
        folders = [str(self.root / "packages" / pkg / "files") for pkg in packages]
        runner = (
            "import json, os, sys\n"
            "sys.path[:0] = [p for p in json.loads(sys.argv[1]) if os.path.exists(p)]\n"
            "sys.path.append(sys.argv[2])\n"
            "import f\n"
            "body = sys.stdin.read()\n"
            "print(json.dumps(f.f(json.loads(body) if body else {})))\n"
        )
        done = subprocess.run(
            [image.python3(self.root), "-I", "-S", "-c", runner, json.dumps(folders), str(code)],
            input=body.decode(), capture_output=True, text=True, env={}, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            return 500, done.stderr[-4000:].encode()
        return 200, done.stdout.strip().splitlines()[-1].encode()


def _insert(paths: list[str], pkg: str) -> None:
    """sys.path.insert(0, ...) unless present, as the bootstrap does (sockPool.go:129-134)."""
    if pkg not in paths:
        paths.insert(0, pkg)
