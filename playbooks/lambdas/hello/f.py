"""An OpenLambda lambda: `curl -X POST localhost:5000/run/hello -d '"you"'`."""

import six


def f(event):
    return six.ensure_text(f"hello, {event}")
