"""Authentication of every request: SigV4 (recomputed with botocore's own signer) or a bearer API key."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import re
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlencode

from starlette.requests import Request

from outcrop.core.identity import INVALID_TOKEN, Caller, IdentityService, hash_token
from outcrop.errors import (
    AuthenticationFailed,
    IncompleteSignature,
    InvalidSignature,
    Throttled,
    UnrecognizedClient,
)

_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<akid>[^/\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;\-]+),\s*Signature=(?P<sig>[0-9a-f]{64})\s*$"
)
MAX_SKEW = timedelta(minutes=15)
KEY_LIMIT_FACTOR = 5
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


class MissingAuthentication(AuthenticationFailed):
    code = "MissingAuthenticationTokenException"


class ExpiredToken(AuthenticationFailed):
    code = "ExpiredTokenException"


class AuthThrottle:
    """Slows down guessing: too many failed authentications from one source, or for one key, in a minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def check(self, source: str | None, key: str | None) -> None:
        if not self._failures:  # the common case: nobody has failed lately
            return
        # A key's own limit is looser: anyone can spray bad signatures at a key ID they know, and a tight
        # limit would lock its real owner out. The source limit is what slows one guesser down.
        for subject, limit in ((source, self.per_minute), (key, self.per_minute * KEY_LIMIT_FACTOR)):
            if subject and self._recent(subject) >= limit:
                raise Throttled("Too many failed authentication attempts. Slow down and retry later.")

    def failed(self, source: str | None, key: str | None) -> None:
        now = time.monotonic()
        for subject in (source, key):
            if subject:
                self._failures[subject].append(now)
        if len(self._failures) > 100_000:  # bounded memory under a spray of random keys: drop the quiet ones
            for subject in [s for s in self._failures if self._recent(s) == 0]:
                del self._failures[subject]

    def _recent(self, subject: str) -> int:
        seen = self._failures.get(subject)
        if not seen:
            return 0
        now = time.monotonic()
        while seen and now - seen[0] > 60:
            seen.popleft()
        return len(seen)


async def authenticate(request: Request, identity: IdentityService, throttle: AuthThrottle, region: str,
                       source: str | None, bearer_only: bool = False, service: str = "bedrock") -> Caller:
    header = request.headers.get("authorization", "")
    bearer = header[:7].lower() == "bearer "
    digest = hash_token(header[7:].strip()) if bearer else None
    key = _key_hint(header, digest)
    throttle.check(source and "ip:" + source, key)
    try:
        return await _authenticate(request, header, digest, identity, region, bearer_only, service)
    except AuthenticationFailed:
        throttle.failed(source and "ip:" + source, key)
        raise


def attempted_key(header: str) -> str | None:
    """The access key ID a (failed) SigV4 request named, for the audit trail; None for bearer tokens."""
    match = _SIGV4.match(header.strip())
    return match["akid"] if match else None


def _key_hint(header: str, digest: str | None) -> str | None:
    """What identifies the key being tried, for throttling (never the secret itself)."""
    if digest is not None:
        return "tok:" + digest[:16]
    match = _SIGV4.match(header.strip())
    return "ak:" + match["akid"] if match else None


async def _authenticate(request: Request, header: str, digest: str | None, identity: IdentityService, region: str,
                        bearer_only: bool, service: str) -> Caller:
    if digest is not None:
        token = header[7:].strip()
        if not token:
            raise IncompleteSignature("Authorization header requires a bearer token.")
        if token.startswith(SHORT_TERM_PREFIX):
            return await asyncio.to_thread(verify_short_term_token, token, identity, region)
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
    return verify_sigv4(request.method, target, request.headers, body, identity, region=region, service=service)


def verify_sigv4(method: str, target: str, headers: Mapping[str, str], body: bytes, identity: IdentityService,
                 now: datetime | None = None, region: str | None = None, service: str = "bedrock") -> Caller:
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
    if match["service"] != service:
        raise InvalidSignature(f"Credential should be scoped to correct service: '{service}', not {match['service']!r}.")
    if region is not None and match["region"] != region:
        raise InvalidSignature(f"Credential should be scoped to a valid region, not '{match['region']}'. "
                               f"This endpoint serves '{region}'.")
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
    declared = h.get("x-amz-content-sha256")
    # botocore signs the declared payload hash instead of hashing the body, so check the body against it.
    if declared is not None and not hmac.compare_digest(declared.lower(), hashlib.sha256(body).hexdigest()):
        raise InvalidSignature("The provided 'x-amz-content-sha256' header does not match what was computed.")
    aws_request = AWSRequest(method=method, url=f"http://{h.get('host', 'localhost')}{target}",
                             headers={name: h[name] for name in signed}, data=body)
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(match["akid"], secret, h.get("x-amz-security-token")), service, match["region"])
    canonical = signer.canonical_request(aws_request)
    expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
    if not hmac.compare_digest(expected, match["sig"]):
        raise InvalidSignature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
            "Access Key and signing method. Consult the service documentation for details.")
    return caller


SHORT_TERM_PREFIX = "bedrock-api-key-"


def verify_short_term_token(token: str, identity: IdentityService, region: str,
                            now: datetime | None = None) -> Caller:
    """A short-term Bedrock API key: a SigV4 query-presigned URL, verified offline with the signer's secret.

    Made by aws-bedrock-token-generator: base64 of `bedrock.amazonaws.com/?Action=CallWithBearerToken&X-Amz-…
    &Version=1` (reference/bedrock-wire.md §4.3)."""
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    try:
        url = base64.b64decode(token[len(SHORT_TERM_PREFIX):], validate=True).decode()
        host, _, query = url.partition("/?")
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        q = dict(pairs)
        akid, date, scope_region, service, _ = q["X-Amz-Credential"].split("/")
        signed_at = datetime.strptime(q["X-Amz-Date"], _AMZ_DATE).replace(tzinfo=UTC)
        lifetime = timedelta(seconds=int(q["X-Amz-Expires"]))
        signature = q["X-Amz-Signature"]
    except (ValueError, KeyError, UnicodeDecodeError):
        raise UnrecognizedClient(INVALID_TOKEN) from None
    if q.get("Action") != "CallWithBearerToken" or service != "bedrock" or scope_region != region:
        raise UnrecognizedClient(INVALID_TOKEN)
    now = now or datetime.now(UTC)
    if now > signed_at + min(lifetime, timedelta(hours=12)) or signed_at - now > MAX_SKEW:
        raise ExpiredToken("The security token included in the request is expired")
    caller, secret = identity.access_key_secret(akid)
    signed = [(k, v) for k, v in pairs if k not in ("X-Amz-Signature", "Version")]
    aws_request = AWSRequest(method="POST", url=f"https://{host}/?" + urlencode(signed, quote_via=quote, safe="-_.~"),
                             headers={"host": host})
    aws_request.context["timestamp"] = q["X-Amz-Date"]
    signer = SigV4QueryAuth(Credentials(akid, secret, q.get("X-Amz-Security-Token")), service, scope_region)
    expected = signer.signature(signer.string_to_sign(aws_request, signer.canonical_request(aws_request)), aws_request)
    if not hmac.compare_digest(expected, signature):
        raise UnrecognizedClient(INVALID_TOKEN)
    return replace(caller, auth="api_key")
