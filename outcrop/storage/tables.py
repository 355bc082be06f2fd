"""SQLAlchemy tables. Every customer resource carries its account."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)  # 12-digit AWS-style account ID
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="Active")  # Active | Suspended


class Principal(Base):
    __tablename__ = "principals"
    __table_args__ = (UniqueConstraint("account_id", "kind", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # AIDA… (user) / AROA… (role) unique ID
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # user | role
    is_admin: Mapped[bool] = mapped_column(default=False)  # the account's root-like admin: every action in it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    is_operator: Mapped[bool] = mapped_column(default=False)  # runs the service: creates and suspends accounts


class AccessKey(Base):
    __tablename__ = "access_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # AKIA… (public)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    # SigV4 needs the secret itself to recompute signatures, so it is stored wrapped (AES-GCM), not hashed.
    secret_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="Active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)  # bearer tokens are only stored hashed
    prefix: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="Active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PolicyDocument(Base):
    """A customer-managed policy (AWS-managed ones live in code, see outcrop/core/policy.py)."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # ANPA…
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(1000), default="")
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PolicyAttachment(Base):
    __tablename__ = "policy_attachments"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), primary_key=True)
    policy_arn: Mapped[str] = mapped_column(String(512), primary_key=True)


class KmsKey(Base):
    """A key of the account's keyring: its default data key, or a customer-managed key (CMK).

    The key material is wrapped by the master key; deleting the row is crypto-shredding.
    """

    __tablename__ = "kms_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a UUID, as KMS key IDs are
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    manager: Mapped[str] = mapped_column(String(16))  # AWS (the account's default data key) | CUSTOMER
    description: Mapped[str] = mapped_column(String(8192), default="")
    state: Mapped[str] = mapped_column(String(24))  # Enabled | Disabled | PendingDeletion
    material_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deletion_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class StoredFile(Base):
    """An uploaded file (OpenAI Files API); its bytes lie encrypted in the blob store."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # file-…
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    filename_encrypted: Mapped[bytes] = mapped_column(LargeBinary)  # file names are customer content too
    bytes: Mapped[int] = mapped_column(BigInteger)
    kms_key_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Generation(Base):
    """Counters bumped on every change to a cached domain, so other processes notice (CLI while serving)."""

    __tablename__ = "generations"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class AuditEvent(Base):
    """One API call, CloudTrail-shaped. Hash-chained per account: `hash` covers `prev_hash` and the record."""

    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("account_id", "seq"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # eventID
    account_id: Mapped[str] = mapped_column(String(12), index=True)  # not a foreign key: the trail outlives rows
    seq: Mapped[int] = mapped_column(BigInteger)
    event_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    event_name: Mapped[str] = mapped_column(String(64))
    event_source: Mapped[str] = mapped_column(String(64))
    read_only: Mapped[bool] = mapped_column()
    username: Mapped[str | None] = mapped_column(String(128), nullable=True)
    access_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    record: Mapped[str] = mapped_column(Text)  # the CloudTrail event JSON, exactly as hashed
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditDigest(Base):
    """A signed statement of one account's chain head at a point in time (log-file integrity validation)."""

    __tablename__ = "audit_digests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(12), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class QuotaLimit(Base):
    """An account's limits for one model ("*": every model), as the operator set them."""

    __tablename__ = "quota_limits"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    concurrent_streams: Mapped[int | None] = mapped_column(Integer, nullable=True)


class QuotaUsage(Base):
    """Requests and tokens counted per account, model and minute: shared by every server process."""

    __tablename__ = "quota_usage"

    account_id: Mapped[str] = mapped_column(String(12), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # minutes since the epoch
    requests: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class QuotaLease(Base):
    """One running stream; expires by itself if its process dies."""

    __tablename__ = "quota_leases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(12), index=True)
    model_id: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoggingConfig(Base):
    """An account's model invocation logging configuration (Bedrock's JSON shape)."""

    __tablename__ = "logging_configs"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    config: Mapped[str] = mapped_column(Text)


class InvocationLog(Base):
    """One model invocation record, sealed under the account's key (prompts and completions inside)."""

    __tablename__ = "invocation_logs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    request_id: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[str] = mapped_column(String(256))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class UsageDaily(Base):
    """Invocations and tokens per account, model, key and UTC day (for `outcrop usage` and the native API)."""

    __tablename__ = "usage_daily"

    account_id: Mapped[str] = mapped_column(String(12), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # access key or API key ID; "" when local
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD (UTC)
    invocations: Mapped[int] = mapped_column(BigInteger, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)


class Job(Base):
    """Long work (DESIGN.md §5): queued → running → completed | failed | stopping → stopped."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)  # ingestion | ...
    target: Mapped[str] = mapped_column(String(256), index=True)  # what it works on, e.g. "<kb>/<data source>"
    status: Mapped[str] = mapped_column(String(16), index=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    progress: Mapped[str] = mapped_column(Text, default="{}")  # JSON statistics
    failure: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class KnowledgeBase(Base):
    __tablename__ = "knowledge_bases"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[str] = mapped_column(String(10), primary_key=True)  # Bedrock-style: 10 upper-case alphanumerics
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    role_arn: Mapped[str] = mapped_column(String(2048))
    configuration: Mapped[str] = mapped_column(Text)  # knowledgeBaseConfiguration (JSON)
    storage: Mapped[str | None] = mapped_column(Text, nullable=True)  # storageConfiguration (JSON) or None
    store: Mapped[str] = mapped_column(String(32))  # the vector store plugin holding the index
    dimension: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)  # bumped with every committed index change
    salt: Mapped[bytes] = mapped_column(LargeBinary)  # keys the document digests below
    status: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DataSource(Base):
    __tablename__ = "kb_data_sources"
    __table_args__ = (UniqueConstraint("knowledge_base_id", "name"),)

    id: Mapped[str] = mapped_column(String(10), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    knowledge_base_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    configuration: Mapped[str] = mapped_column(Text)  # dataSourceConfiguration (JSON)
    ingestion: Mapped[str] = mapped_column(Text)  # vectorIngestionConfiguration (JSON, chunking validated)
    deletion_policy: Mapped[str] = mapped_column(String(8))  # RETAIN | DELETE
    status: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class KbDocument(Base):
    """One source document of a data source: its (sealed) URI, a keyed digest of what was indexed, its status."""

    __tablename__ = "kb_documents"
    __table_args__ = (UniqueConstraint("data_source_id", "uri_digest"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    knowledge_base_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id"), index=True)
    data_source_id: Mapped[str] = mapped_column(ForeignKey("kb_data_sources.id"), index=True)
    uri_digest: Mapped[str] = mapped_column(String(64))
    uri_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    content_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(24))  # INDEXED | FAILED | DELETING ...
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class KbChunk(Base):
    """One indexed chunk: its text, metadata and vector, sealed. The row ID is the vector's ID in the index."""

    __tablename__ = "kb_chunks"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    knowledge_base_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id"), index=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("kb_documents.id"), index=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # JSON: text, parent, page, metadata
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # sealed float32
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RagSession(Base):
    """A RetrieveAndGenerate conversation (sessionId), sealed."""

    __tablename__ = "rag_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Guardrail(Base):
    """A guardrail; its policies live in GuardrailVersion rows (DRAFT and immutable numbered versions)."""

    __tablename__ = "guardrails"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[str] = mapped_column(String(12), primary_key=True)  # Bedrock-style: 12 lower-case alphanumerics
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(50))
    latest_version: Mapped[int] = mapped_column(Integer, default=0)  # numbered versions are never reused
    tags: Mapped[str] = mapped_column(Text)  # JSON list of {key, value}
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GuardrailVersion(Base):
    """One version of a guardrail: its description, messages and policies, sealed (they are customer content)."""

    __tablename__ = "guardrail_versions"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)  # "{guardrail id}:{DRAFT|n}"
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    guardrail_id: Mapped[str] = mapped_column(ForeignKey("guardrails.id"), index=True)
    version: Mapped[str] = mapped_column(String(8))
    kms_key: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the customer key sealing it, if given
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ModelJob(Base):
    """The Bedrock-facing record of a model job (customization, import, batch, async invoke); its status,
    progress and failure live in the Job row with the same id, which the worker drives."""

    __tablename__ = "model_jobs"
    __table_args__ = (UniqueConstraint("account_id", "kind", "name"),)

    id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)  # 12 lower-case alphanumerics
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)  # customization | import | batch | async
    name: Mapped[str] = mapped_column(String(128))  # the job name (async invokes: their id)
    model_id: Mapped[str] = mapped_column(String(2048))  # the base / target model as the caller named it
    output_model: Mapped[str | None] = mapped_column(String(12), nullable=True)  # the custom/imported model made
    client_token: Mapped[str | None] = mapped_column(String(256), nullable=True)
    kms_key: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the customer key sealing it, if given
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # the request (URIs, hyperparameters, model input), sealed
    tags: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CustomModel(Base):
    """A fine-tuned (kind custom) or imported (kind imported) model. Its weights — a LoRA adapter, or the
    imported files — are sealed blobs under the account's key."""

    __tablename__ = "custom_models"
    __table_args__ = (UniqueConstraint("account_id", "kind", "name"),)

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # custom | imported
    name: Mapped[str] = mapped_column(String(128))
    base_model_id: Mapped[str | None] = mapped_column(String(256), nullable=True)  # catalog ID of the base
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # Creating | Active | Failed
    serving: Mapped[str | None] = mapped_column(String(32), nullable=True)  # llamacpp-lora | transformers-peft | ...
    architecture: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kms_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # details: hyperparameters, data config, metrics, notes
    blobs: Mapped[str] = mapped_column(Text, default="{}")  # JSON {role: blob key} of the sealed weight files
    tags: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProvisionedModel(Base):
    """Provisioned throughput: here, the knob that keeps a model loaded (and its adapter resident)."""

    __tablename__ = "provisioned_models"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    model_arn: Mapped[str] = mapped_column(String(2048))
    model_units: Mapped[int] = mapped_column(Integer)
    commitment: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # Creating | InService | Updating | Failed
    failure: Mapped[str | None] = mapped_column(Text, nullable=True)
    tags: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
