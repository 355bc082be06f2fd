"""knowledge bases: jobs, knowledge bases, data sources, documents, chunks, RAG sessions

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def _account() -> sa.Column:
    return sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.id"), nullable=False, index=True)


def _times(*names: str) -> list[sa.Column]:
    return [sa.Column(name, sa.DateTime(timezone=True), nullable=False) for name in names]


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True), _account(),
        sa.Column("kind", sa.String(32), nullable=False, index=True),
        sa.Column("target", sa.String(256), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("progress", sa.Text, nullable=False),
        sa.Column("failure", sa.Text, nullable=True),
        *_times("created_at", "updated_at"),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    op.create_table(
        "knowledge_bases",
        sa.Column("id", sa.String(10), primary_key=True), _account(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("role_arn", sa.String(2048), nullable=False),
        sa.Column("configuration", sa.Text, nullable=False),
        sa.Column("storage", sa.Text, nullable=True),
        sa.Column("store", sa.String(32), nullable=False),
        sa.Column("dimension", sa.Integer, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("salt", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        *_times("created_at", "updated_at"),
        sa.UniqueConstraint("account_id", "name"),
    )
    op.create_table(
        "kb_data_sources",
        sa.Column("id", sa.String(10), primary_key=True), _account(),
        sa.Column("knowledge_base_id", sa.String(10), sa.ForeignKey("knowledge_bases.id"), nullable=False, index=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("configuration", sa.Text, nullable=False),
        sa.Column("ingestion", sa.Text, nullable=False),
        sa.Column("deletion_policy", sa.String(8), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        *_times("created_at", "updated_at"),
        sa.UniqueConstraint("knowledge_base_id", "name"),
    )
    op.create_table(
        "kb_documents",
        sa.Column("id", sa.String(36), primary_key=True), _account(),
        sa.Column("knowledge_base_id", sa.String(10), sa.ForeignKey("knowledge_bases.id"), nullable=False, index=True),
        sa.Column("data_source_id", sa.String(10), sa.ForeignKey("kb_data_sources.id"), nullable=False, index=True),
        sa.Column("uri_digest", sa.String(64), nullable=False),
        sa.Column("uri_sealed", sa.LargeBinary, nullable=False),
        sa.Column("content_digest", sa.String(64), nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("chunks", sa.Integer, nullable=False),
        *_times("updated_at", "created_at"),
        sa.UniqueConstraint("data_source_id", "uri_digest"),
    )
    op.create_table(
        "kb_chunks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        _account(),
        sa.Column("knowledge_base_id", sa.String(10), sa.ForeignKey("knowledge_bases.id"), nullable=False, index=True),
        sa.Column("document_id", sa.String(36), sa.ForeignKey("kb_documents.id"), nullable=False, index=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        *_times("created_at"),
    )
    op.create_table(
        "rag_sessions",
        sa.Column("id", sa.String(36), primary_key=True), _account(),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        *_times("created_at", "updated_at"),
    )


def downgrade() -> None:
    for table in ("rag_sessions", "kb_chunks", "kb_documents", "kb_data_sources", "knowledge_bases", "jobs"):
        op.drop_table(table)
