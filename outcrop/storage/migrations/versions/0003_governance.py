"""governance: hash-chained audit events and digests, quotas, invocation logging, daily usage

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(12), nullable=False, index=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("event_name", sa.String(64), nullable=False),
        sa.Column("event_source", sa.String(64), nullable=False),
        sa.Column("read_only", sa.Boolean, nullable=False),
        sa.Column("username", sa.String(128), nullable=True),
        sa.Column("access_key_id", sa.String(64), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("account_id", "seq"),
    )
    op.create_table(
        "audit_digests",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(12), nullable=False, index=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "quota_limits",
        sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.id"), primary_key=True),
        sa.Column("model_id", sa.String(256), primary_key=True),
        sa.Column("requests_per_minute", sa.Integer, nullable=True),
        sa.Column("tokens_per_minute", sa.Integer, nullable=True),
        sa.Column("concurrent_streams", sa.Integer, nullable=True),
    )
    op.create_table(
        "quota_usage",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("model_id", sa.String(256), primary_key=True),
        sa.Column("window", sa.BigInteger, primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "quota_leases",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(12), nullable=False, index=True),
        sa.Column("model_id", sa.String(256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "logging_configs",
        sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.id"), primary_key=True),
        sa.Column("config", sa.Text, nullable=False),
    )
    op.create_table(
        "invocation_logs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.id"), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(256), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "usage_daily",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("model_id", sa.String(256), primary_key=True),
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("invocations", sa.BigInteger, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("usage_daily", "invocation_logs", "logging_configs", "quota_leases", "quota_usage", "quota_limits",
                  "audit_digests", "audit_events"):
        op.drop_table(table)
