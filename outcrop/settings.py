"""One typed Settings object (OUTCROP_ environment prefix, optional outcrop.toml), validated at start-up."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


def _default_home() -> Path:
    return Path(os.environ.get("OUTCROP_HOME", Path.home() / ".outcrop"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTCROP_", toml_file="outcrop.toml", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="data dir: database, keys, model cache")
    host: str = "127.0.0.1"
    port: int = Field(8480, ge=0, le=65535)
    region: str = "us-east-1"
    models_file: Path | None = Field(None, description="extra models (TOML); default <home>/models.toml")
    default_chat_model: str = "qwen.qwen2-5-coder-0-5b-instruct-v1:0"
    default_embedding_model: str = "sentence-transformers.all-minilm-l6-v2-v1:0"
    threads: int = Field(0, ge=0, description="inference threads per model; 0 = all cores")
    slots: int = Field(4, ge=1, le=64, description="parallel sequences per chat model (continuous batching)")
    context_size: int = Field(16384, ge=512, description="total KV cache, shared by the slots (4096 tokens a slot by default)")
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_output_tokens: int = Field(4096, ge=1)
    tls_cert: Path | None = Field(None, description="PEM certificate; enables https")
    tls_key: Path | None = Field(None, description="PEM private key for tls_cert")
    tls_self_signed: bool = Field(False, description="generate and use a self-signed certificate in <home>/tls")
    allow_public_bind: bool = False
    allowed_cidrs: list[str] = Field(default_factory=list, description="only these networks may connect (the private-endpoint analogue); empty = any")
    forwarded_allow_ips: list[str] = Field(default_factory=list, description="reverse proxies trusted for X-Forwarded-For/-Proto")
    master_key: SecretStr | None = Field(None, description="base64 of 32 bytes; instead of the key file")
    master_key_file: Path | None = Field(None, description="master keyring file; default <home>/master.key")
    auth_failures_per_minute: int = Field(20, ge=1, description="failed authentications per source or key before throttling")
    log_level: str = "info"
    log_format: str = Field("json", pattern="^(json|text)$", description="json: one object a line, with the request ID")
    otlp_endpoint: str | None = Field(None, description="OTLP/HTTP collector (e.g. http://127.0.0.1:4318): request traces")
    audit_retention_days: int = Field(0, ge=0, description="drop audit records older than this at start-up; 0 = keep all")
    audit_digest_every_s: float = Field(300.0, gt=0, description="sign each account's audit chain head this often")
    file_roots: list[Path] = Field(default_factory=list, description="directories file:// URIs may name (data sources, batch input); always includes <home>/files")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint for s3:// URIs (MinIO, Ceph, moto...)")
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    job_lease_s: float = Field(30.0, ge=1, description="a running job not heard of for this long lost its worker and is resumed")
    fine_tuning_checkpoint_s: float = Field(60.0, ge=0, description="a fine-tuning job saves a checkpoint (sealed) at most this often; a resumed job picks up from its last one")
    kb_max_document_bytes: int = Field(50 * 1024 * 1024, ge=1, description="a larger source document fails its ingestion with a reason")
    kb_embed_batch: int = Field(64, ge=1, le=4096, description="chunks embedded per batch during ingestion")
    reranker_model_path: Path | None = Field(None, description="a sentence-transformers CrossEncoder folder; Rerank uses it instead of embedding similarity")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("allowed_cidrs")
    @classmethod
    def _check_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"allowed_cidrs: {cidr!r} is not a network (e.g. 10.0.0.0/8)") from None
        return value

    @model_validator(mode="after")
    def _refuse_public_bind(self) -> Settings:
        # Without TLS a public bind would send keys and prompts over plain HTTP: only when explicitly overridden.
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if not self.allow_public_bind and not self.tls_enabled and not _is_loopback(self.host):
            raise ValueError(
                f"refusing to bind {self.host}: not a loopback address and TLS is not configured; "
                "set OUTCROP_ALLOW_PUBLIC_BIND=1 to override"
            )
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.tls_self_signed or self.tls_cert is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_enabled else "http"

    @property
    def master_key_path(self) -> Path:
        return self.master_key_file or self.home / "master.key"

    @property
    def models_path(self) -> Path:
        return self.models_file or self.home / "models.toml"

    @property
    def model_cache(self) -> Path:
        return self.home / "models"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.home / 'outcrop.db'}"

    @property
    def allowed_file_roots(self) -> list[Path]:
        return [self.home / "files", *(p.expanduser().resolve() for p in self.file_roots)]

    @property
    def effective_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
