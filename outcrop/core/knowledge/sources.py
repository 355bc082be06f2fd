"""Where a data source's documents come from: an S3-compatible bucket, or a directory on the server.

Bedrock's S3 data source is `{"type": "S3", "s3Configuration": {"bucketArn": "arn:aws:s3:::bucket",
"inclusionPrefixes": [...]}}`. The embedded mode's directory source uses the same shape with a `file://` URI
as the bucket ARN (boto3 accepts any string there), and only inside the allowlisted directories.
A `<file>.metadata.json` sidecar next to a document carries its metadata attributes, as on Bedrock.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outcrop.core.knowledge.parsing import is_sidecar, sidecar_for
from outcrop.core.objects import directory_of, s3_client
from outcrop.errors import Invalid, NotFound, Unavailable
from outcrop.settings import Settings


@dataclass(frozen=True)
class SourceDocument:
    uri: str  # s3://bucket/key or file:///path: the document's location as retrieval results report it
    name: str  # the file name (decides the parser)
    size: int
    fetch: Callable[[], bytes]
    sidecar: Callable[[], bytes] | None  # the metadata sidecar, when there is one


class Source(ABC):
    @abstractmethod
    def documents(self) -> Iterator[SourceDocument]:
        """Every document of the source, in a stable order."""


def open_source(settings: Settings, configuration: dict[str, Any]) -> Source | None:
    """The source a data source configuration names; None for CUSTOM (documents arrive through the API)."""
    kind = configuration.get("type")
    if kind == "CUSTOM":
        return None
    s3 = configuration.get("s3Configuration") or {}
    arn = s3.get("bucketArn", "")
    prefixes = list(s3.get("inclusionPrefixes") or [""])
    if arn.startswith("file://"):
        return DirectorySource(directory_of(settings, arn), prefixes)
    return S3Source(settings, bucket_of(arn), prefixes)


def validate_source(settings: Settings, configuration: Any) -> dict[str, Any]:
    if not isinstance(configuration, dict) or "type" not in configuration:
        raise Invalid("dataSourceConfiguration.type is required")
    kind = configuration["type"]
    if kind == "CUSTOM":
        return configuration
    if kind != "S3":
        raise Invalid(f"Data source type {kind} is not supported by Outcrop. Supported: S3 (an S3-compatible bucket, "
                      "or a file:// directory on the server) and CUSTOM (documents ingested through the API).")
    s3 = configuration.get("s3Configuration")
    if not isinstance(s3, dict) or not isinstance(s3.get("bucketArn"), str):
        raise Invalid("dataSourceConfiguration.s3Configuration.bucketArn is required for an S3 data source")
    prefixes = s3.get("inclusionPrefixes")
    if prefixes is not None and (not isinstance(prefixes, list) or len(prefixes) > 1
                                 or not all(isinstance(p, str) for p in prefixes)):
        raise Invalid("s3Configuration.inclusionPrefixes takes at most one prefix")
    arn = s3["bucketArn"]
    if arn.startswith("file://"):
        directory_of(settings, arn)
    else:
        bucket_of(arn)
        if not settings.s3_endpoint_url:
            raise Invalid("No S3-compatible endpoint is configured on this server: set OUTCROP_S3_ENDPOINT_URL "
                          "(and OUTCROP_S3_ACCESS_KEY_ID / OUTCROP_S3_SECRET_ACCESS_KEY), or use a file:// directory")
    return configuration


def bucket_of(arn: str) -> str:
    if arn.startswith("arn:aws:s3:::") and len(arn) > len("arn:aws:s3:::"):
        return arn[len("arn:aws:s3:::"):]
    raise Invalid(f"s3Configuration.bucketArn must look like arn:aws:s3:::bucket-name (or file:///dir), not {arn!r}")


class DirectorySource(Source):
    def __init__(self, root: Path, prefixes: list[str]) -> None:
        self.root = root
        self.prefixes = prefixes

    def documents(self) -> Iterator[SourceDocument]:
        if not self.root.is_dir():
            raise NotFound(f"The directory {self.root} does not exist on the server")
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames.sort()
            names = set(filenames)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                relative = path.relative_to(self.root).as_posix()
                if is_sidecar(name) or path.is_symlink() or not any(relative.startswith(p) for p in self.prefixes):
                    continue
                sidecar = Path(dirpath) / sidecar_for(name)
                yield SourceDocument(path.as_uri(), name, path.stat().st_size, path.read_bytes,
                                     sidecar.read_bytes if sidecar_for(name) in names else None)


class S3Source(Source):
    def __init__(self, settings: Settings, bucket: str, prefixes: list[str]) -> None:
        self.settings = settings
        self.bucket = bucket
        self.prefixes = prefixes

    def _client(self) -> Any:
        return s3_client(self.settings)

    def documents(self) -> Iterator[SourceDocument]:
        import botocore.exceptions

        client = self._client()
        try:
            keys: dict[str, int] = {}
            for prefix in self.prefixes:
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                    keys.update({o["Key"]: o["Size"] for o in page.get("Contents", []) if not o["Key"].endswith("/")})
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket", "404"):
                raise NotFound(f"The S3 bucket {self.bucket} does not exist at {self.settings.s3_endpoint_url}") from exc
            raise Unavailable(f"Listing s3://{self.bucket} failed: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise Unavailable(f"The S3 endpoint {self.settings.s3_endpoint_url} is unreachable: {exc}") from exc
        for key in sorted(keys):
            name = key.rsplit("/", 1)[-1]
            if is_sidecar(name):
                continue
            sidecar = key[: len(key) - len(name)] + sidecar_for(name)
            yield SourceDocument(f"s3://{self.bucket}/{key}", name, keys[key], self._getter(client, key),
                                 self._getter(client, sidecar) if sidecar in keys else None)

    def _getter(self, client: Any, key: str) -> Callable[[], bytes]:
        def get() -> bytes:
            import botocore.exceptions

            try:
                return client.get_object(Bucket=self.bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                raise Invalid(f"could not read s3://{self.bucket}/{key}: {exc}") from exc
        return get
