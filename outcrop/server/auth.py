"""Authentication of every request: SigV4 (recomputed with botocore's own signer) or a bearer API key."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from starlette.requests import Request

from outcrop.core.identity import Caller, IdentityService, hash_token
from outcrop.errors import AuthenticationFailed, IncompleteSignature, InvalidSignature

_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<akid>[^/\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;\-]+),\s*Signature=(?P<sig>[0-9a-f]{64})\s*$"
)
MAX_SKEW = timedelta(minutes=15)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


class MissingAuthentication(AuthenticationFailed):
    code = "MissingAuthenticationTokenException"


async def authenticate(request: Request, identity: IdentityService, bearer_only: bool = False) -> Caller:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        token = header[7:].strip()
        if not token:
            raise IncompleteSignature("Authorization header requires a bearer token.")
        digest = hash_token(token)
        if not identity.is_cached(token_digest=digest):  # first use: the database lookup runs off the event loop
            return await asyncio.to_thread(identity.api_key_caller, token, digest)
        return identity.api_key_caller(token, digest)
    if bearer_only:
        raise MissingAuthentication("Missing bearer authentication in header") if not header else \
            IncompleteSignature("Authorization header must be: Bearer <API key>")
    if not header:
        raise MissingAuthentication("Missing Authentication Token")
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    query = request.scope.get("query_string", b"")
    target = raw.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    body = await request.body()
    akid = _SIGV4.match(header.strip())
    if akid and not identity.is_cached(access_key_id=akid["akid"]):
        with contextlib.suppress(AuthenticationFailed):  # reported by verify_sigv4 with the right code
            await asyncio.to_thread(identity.access_key_secret, akid["akid"])
    return verify_sigv4(request.method, target, request.headers, body, identity)


def verify_sigv4(method: str, target: str, headers: Mapping[str, str], body: bytes, identity: IdentityService,
                 now: datetime | None = None) -> Caller:
    """Recompute the signature over the raw (still %-encoded) path, as botocore computed it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    h = {k.lower(): v for k, v in headers.items()}
    match = _SIGV4.match(h.get("authorization", "").strip())
    if not match:
        raise IncompleteSignature(
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters "
            "in the AWS4-HMAC-SHA256 format.")
    caller, secret = identity.access_key_secret(match["akid"])
    if match["service"] != "bedrock":
        raise InvalidSignature(f"Credential should be scoped to correct service: 'bedrock', not {match['service']!r}.")
    amz_date = h.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise IncompleteSignature("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.") from None
    if amz_date[:8] != match["date"]:
        raise InvalidSignature(f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                               f"'{match['date']}' != '{amz_date[:8]}'")
    now = now or datetime.now(UTC)
    if abs(now - signed_at) > MAX_SKEW:
        earlier, later = (amz_date, now.strftime(_AMZ_DATE)) if signed_at < now else (now.strftime(_AMZ_DATE), amz_date)
        bound = (now - MAX_SKEW if signed_at < now else now + MAX_SKEW).strftime(_AMZ_DATE)
        raise InvalidSignature(f"Signature expired: {earlier} is now earlier than {bound} "
                               f"({later} - 15 min.)" if signed_at < now else
                               f"Signature not yet current: {amz_date} is still later than {bound} ({earlier} + 15 min.)")
    signed = match["signed"].split(";")
    absent = [name for name in signed if name not in h]
    if absent:
        raise IncompleteSignature(f"Signed headers are missing from the request: {', '.join(absent)}")
    aws_request = AWSRequest(method=method, url=f"http://{h.get('host', 'localhost')}{target}",
                             headers={name: h[name] for name in signed}, data=body)
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(match["akid"], secret, h.get("x-amz-security-token")), "bedrock", match["region"])
    canonical = signer.canonical_request(aws_request)
    expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
    if not hmac.compare_digest(expected, match["sig"]):
        raise InvalidSignature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
            "Access Key and signing method. Consult the service documentation for details.")
    return caller
