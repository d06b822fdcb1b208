"""A store's failures said as what the operator can do about them (never a credential).

boto3 has already tried each request ATTEMPTS times (its "standard" retries: throttling,
5xx, cut and timed-out connections, with backoff) when one of these is raised.
"""

from __future__ import annotations

import re

from olmirror.connection.bucket_location import BucketLocation
from olmirror.errors import OlmirrorError, Unreachable

ATTEMPTS = 5  # boto3's tries of one request, the first included
NOT_FOUND = ("404", "NoSuchKey", "NotFound")
REFUSED = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403")
WRONG_REGION = ("PermanentRedirect", "AuthorizationHeaderMalformed", "301", "400")
OVERLOADED = ("SlowDown", "ServiceUnavailable", "InternalError", "503", "500")


def _cause(exc: Exception) -> str:
    """The operating system's reason under a connection failure ('[Errno 111] Connection
    refused'), or the failure itself."""
    cause = str(getattr(exc, "kwargs", {}).get("error") or exc)
    errno = re.search(r"\[Errno -?\d+\][^'\"]*", cause)
    return errno.group(0).strip() if errno else cause


def _client_error(exc: Exception, location: BucketLocation, what: str) -> OlmirrorError:
    response = getattr(exc, "response", {})
    error = response.get("Error", {})
    code, message = error.get("Code", "?"), error.get("Message", "")
    if code == "NoSuchBucket":
        return OlmirrorError(
            f"{what}: the bucket {location.bucket!r} does not exist at "
            f"{location.endpoint_url or 'AWS'}; create it (olmirror leaves a bucket's "
            "creation, region and policy to you)"
        )
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = error.get("Region") or headers.get("x-amz-bucket-region")
    if code in WRONG_REGION and region and region != location.region:
        return OlmirrorError(
            f"{what}: the bucket {location.bucket!r} is in region {region}; set "
            f"mirror.serve.region (or the registry's region=) to {region}"
        )
    if code in REFUSED:
        return OlmirrorError(
            f"{what}: the store refused the request ({code}: {message}); give the AWS "
            "credentials a policy that lets them list, read, write and delete objects "
            f"under {location.key('') or 'the bucket'} of {location.bucket!r}"
        )
    if code in OVERLOADED:
        return Unreachable(
            f"{what}: the store still answered {code} after {ATTEMPTS} tries ({message}); "
            "it is overloaded or failing: run olmirror again later"
        )
    return OlmirrorError(f"{what}: the store answered {code}: {message}")


def failure(exc: Exception, location: BucketLocation, what: str) -> OlmirrorError:
    """`exc`, a botocore failure of `what`, said with its cause and the fix."""
    from botocore import exceptions as boto

    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return OlmirrorError(
            f"{what}: no AWS credentials were found; olmirror takes them from the standard "
            "AWS chain, never from the spec: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE with a profile in ~/.aws/credentials"
        )
    if isinstance(exc, boto.SSLError):
        return Unreachable(
            f"{what}: TLS with {location.endpoint_url or 'AWS'} failed ({_cause(exc)}); if "
            "the store's certificate comes from a private CA, set AWS_CA_BUNDLE to its file"
        )
    if isinstance(exc, boto.ConnectionError | boto.HTTPClientError | boto.IncompleteReadError):
        return Unreachable(
            f"{what}: the S3 endpoint {location.endpoint_url or '(AWS)'} cannot be reached "
            f"after {ATTEMPTS} tries: {_cause(exc)}"
        )
    if isinstance(exc, boto.ClientError):
        return _client_error(exc, location, what)
    return OlmirrorError(f"{what}: {exc}")
