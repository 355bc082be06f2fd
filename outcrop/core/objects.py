"""Objects named by the URIs of Bedrock's job configurations: `s3://bucket/key` against the configured
S3-compatible endpoint, `file:///path` inside the allowlisted directories, and `file-…` IDs of files uploaded
through the Files API (sealed in the service, read with the caller's rights).

Jobs read their input through here and write their outputs (metrics, batch results) back the same way. A
prefix URI (ending in `/`, or naming a directory) is where a job writes the files it produces.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from outcrop.errors import AccessDenied, Invalid, NotFound, Unavailable
from outcrop.settings import Settings

MAX_OBJECT_BYTES = 1 << 30


@dataclass(frozen=True)
class Location:
    scheme: str  # s3 | file | upload
    bucket: str  # s3 bucket; "" otherwise
    key: str  # s3 key, absolute path, or file ID

    @property
    def uri(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.key}"
        if self.scheme == "file":
            return Path(self.key).as_uri()
        return self.key

    def child(self, *names: str) -> Location:
        """The location of a file below this prefix."""
        if self.scheme == "upload":
            raise Invalid("an uploaded file cannot hold outputs; give an s3:// or file:// prefix")
        joined = "/".join(n.strip("/") for n in names)
        base = self.key.rstrip("/")
        return Location(self.scheme, self.bucket, f"{base}/{joined}" if base else joined)


def parse_uri(settings: Settings, uri: Any, field: str) -> Location:
    """Check a URI names a place this server may use, naming the field when it does not."""
    if not isinstance(uri, str) or not uri:
        raise Invalid(f"{field} is required")
    if uri.startswith("file-") and "/" not in uri:
        return Location("upload", "", uri)
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise Invalid(f"{field}: {uri!r} names no bucket; use s3://bucket/key")
        if not settings.s3_endpoint_url:
            raise Invalid(f"{field}: no S3-compatible endpoint is configured on this server: set "
                          "OUTCROP_S3_ENDPOINT_URL, or use a file:// path inside the allowlisted directories")
        return Location("s3", parsed.netloc, parsed.path.lstrip("/"))
    if parsed.scheme == "file":
        path = directory_of(settings, uri)
        return Location("file", "", str(path) + ("/" if uri.endswith("/") else ""))
    raise Invalid(f"{field}: {uri!r} is not an s3:// URI, a file:// URI or an uploaded file ID (file-…)")


class ObjectStore:
    """Reads and writes objects at Locations. `read_upload` opens Files-API uploads for the caller."""

    def __init__(self, settings: Settings, read_upload: Callable[[str], bytes] | None = None) -> None:
        self.settings = settings
        self.read_upload = read_upload
        self._s3: Any = None

    def read(self, where: Location) -> bytes:
        if where.scheme == "upload":
            if self.read_upload is None:
                raise Invalid(f"uploaded files cannot be read here ({where.key})")
            return self.read_upload(where.key)
        if where.scheme == "file":
            path = Path(where.key)
            if not path.is_file():
                raise NotFound(f"{where.uri} does not exist on the server")
            if path.stat().st_size > MAX_OBJECT_BYTES:
                raise Invalid(f"{where.uri} is larger than {MAX_OBJECT_BYTES >> 20} MiB")
            return path.read_bytes()
        return self._s3_call(where, "get_object", lambda c: c.get_object(Bucket=where.bucket, Key=where.key)["Body"].read())

    def list(self, where: Location) -> list[Location]:
        """The objects below a prefix (or the one object it names), sorted."""
        if where.scheme == "upload":
            return [where]
        if where.scheme == "file":
            path = Path(where.key)
            if path.is_file():
                return [where]
            if not path.is_dir():
                raise NotFound(f"{where.uri} does not exist on the server")
            return [Location("file", "", str(p)) for p in sorted(path.rglob("*")) if p.is_file() and not p.is_symlink()]

        def keys(client: Any) -> list[str]:
            found: list[str] = []
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=where.bucket, Prefix=where.key):
                found += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
            return sorted(found)

        return [Location("s3", where.bucket, k) for k in self._s3_call(where, "list", keys)]

    def write(self, where: Location, data: bytes, content_type: str = "application/json") -> None:
        if where.scheme == "upload":
            raise Invalid("outputs cannot be written to an uploaded file")
        if where.scheme == "file":
            path = Path(where.key)
            directory_of(self.settings, path.parent.as_uri())  # still inside the allowlist
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            return
        self._s3_call(where, "put_object", lambda c: c.put_object(Bucket=where.bucket, Key=where.key, Body=data,
                                                                   ContentType=content_type))

    def _s3_call(self, where: Location, what: str, call: Callable[[Any], Any]) -> Any:
        import botocore.exceptions

        try:
            return call(self._client())
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket", "NoSuchKey", "404"):
                raise NotFound(f"{where.uri} does not exist at {self.settings.s3_endpoint_url}") from exc
            if code in ("AccessDenied", "403"):
                raise Invalid(f"the S3 endpoint refused {what} on {where.uri}: {code}") from exc
            raise Unavailable(f"{what} on {where.uri} failed: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise Unavailable(f"The S3 endpoint {self.settings.s3_endpoint_url} is unreachable: {exc}") from exc

    def _client(self) -> Any:
        if self._s3 is None:
            self._s3 = s3_client(self.settings)
        return self._s3


def directory_of(settings: Settings, uri: str) -> Path:
    """A file:// URI as a real directory inside an allowlisted root (symlinks resolved first)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise Invalid(f"{uri!r} is not a file:///absolute/path URI")
    path = Path(unquote(parsed.path)).resolve()
    roots = [root.resolve() for root in settings.allowed_file_roots]
    if not any(path == root or root in path.parents for root in roots):
        raise AccessDenied(f"{path} is outside the directories this server may read "
                           f"({', '.join(map(str, roots))}); add it to OUTCROP_FILE_ROOTS")
    return path


def s3_client(settings: Settings) -> Any:
    import botocore.session
    from botocore.config import Config

    secret = settings.s3_secret_access_key
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id or "outcrop",
        aws_secret_access_key=secret.get_secret_value() if secret else "outcrop",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))
