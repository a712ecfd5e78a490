"""One plain HTTP request (urllib), for the client scripts' calls the `openai` client has no
method for."""

import json
import urllib.error
import urllib.request


def request(url, method, body=None, headers=None):
    """(status, headers, body bytes) of one request; a body that is not bytes is sent as JSON."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
