"""The service's own HTTP requests (a CDS Client's JWK Set at its jku, the EHR's FHIR server on a
hook call): GET only, to a URL the caller has checked against an allow-list, with a timeout, a
size limit, and no redirects followed (a redirect could lead anywhere)."""

import json
import urllib.error
import urllib.request


class FetchError(Exception):
    """The resource could not be had; the message says why, without the token."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise FetchError(f"{req.full_url} answered a redirect ({code}), which is not followed")


_OPENER = urllib.request.build_opener(_NoRedirects)


def get_json(url: str, timeout: float, max_bytes: int, headers: dict | None = None) -> dict:
    """The JSON object at `url`; FetchError when it is not had within `timeout` seconds, is larger
    than `max_bytes`, is not JSON, or the server refuses."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})}, method="GET")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body = response.read(max_bytes + 1)
    except FetchError:
        raise
    except urllib.error.HTTPError as error:
        raise FetchError(f"{url} answered {error.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise FetchError(f"{url} could not be read ({type(error).__name__})") from None
    if len(body) > max_bytes:
        raise FetchError(f"{url} sent more than {max_bytes} bytes")
    try:
        value = json.loads(body)
    except ValueError:
        raise FetchError(f"{url} did not send JSON") from None
    if not isinstance(value, dict):
        raise FetchError(f"{url} did not send a JSON object")
    return value
