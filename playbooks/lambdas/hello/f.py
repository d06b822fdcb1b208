"""An OpenLambda lambda: `curl -X POST localhost:5000/run/hello -d '"you"'`."""

import requests
import six


def f(event):
    return {"hello": six.ensure_text(str(event)), "requests": requests.__version__}
