"""Run on the mirror host: print the pid of the nginx master that serves `conf`, from its
pid file, or exit saying why there is none (no pid file, a stale pid, another program).

Arguments: the pid file, the config path.
"""

import sys

pid_file, conf = sys.argv[1], sys.argv[2]
try:
    with open(pid_file) as f:
        text = f.read().strip()
except OSError:
    sys.exit("no pid file")
if not text.isdigit():
    sys.exit(f"pid file holds {text[:40]!r}")
try:
    with open(f"/proc/{text}/cmdline", "rb") as f:
        cmdline = f.read()
except OSError:
    sys.exit(f"pid {text} of the pid file is gone")
title = cmdline.replace(b"\0", b" ").decode("utf-8", "replace") + " "
if not title.startswith("nginx: master process") or f" -c {conf} " not in title:
    sys.exit(f"pid {text} of the pid file is another program now")
print(text)
