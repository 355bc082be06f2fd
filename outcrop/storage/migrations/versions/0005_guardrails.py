"""guardrails and their versions

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def _account() -> sa.Column:
    return sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.id"), nullable=False, index=True)


def _times() -> list[sa.Column]:
    return [sa.Column(name, sa.DateTime(timezone=True), nullable=False) for name in ("created_at", "updated_at")]


def upgrade() -> None:
    op.create_table(
        "guardrails",
        sa.Column("id", sa.String(12), primary_key=True), _account(),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        *_times(),
        sa.UniqueConstraint("account_id", "name"),
    )
    op.create_table(
        "guardrail_versions",
        sa.Column("id", sa.String(24), primary_key=True), _account(),
        sa.Column("guardrail_id", sa.String(12), sa.ForeignKey("guardrails.id"), nullable=False, index=True),
        sa.Column("version", sa.String(8), nullable=False),
        sa.Column("kms_key", sa.String(64), nullable=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        *_times(),
    )


def downgrade() -> None:
    op.drop_table("guardrail_versions")
    op.drop_table("guardrails")
