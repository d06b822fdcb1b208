"""Run on a host: GET a URL there (no proxies), waiting only while the port refuses
connections (a server just started or reloaded); exit 0 on HTTP 200, else say why.

Arguments: the URL, the seconds to wait while refused.
"""

import sys
import time
import urllib.error
import urllib.request

url, wait = sys.argv[1], float(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
request = urllib.request.Request(url, headers={"Accept": "text/html"})
deadline = time.monotonic() + wait
while True:
    try:
        with opener.open(request, timeout=10) as r:
            r.read(1 << 16)
            sys.exit(0 if r.status == 200 else f"it answered HTTP {r.status}")
    except urllib.error.HTTPError as exc:
        sys.exit(f"it answered HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionError) and time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        sys.exit(f"{type(reason).__name__}: {reason}")
