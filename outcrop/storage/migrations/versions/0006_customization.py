"""model jobs, custom and imported models, provisioned throughput

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def _account() -> sa.Column:
    return sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.id"), nullable=False, index=True)


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "model_jobs",
        sa.Column("id", sa.String(36), sa.ForeignKey("jobs.id"), primary_key=True), _account(),
        sa.Column("kind", sa.String(16), nullable=False, index=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("model_id", sa.String(2048), nullable=False),
        sa.Column("output_model", sa.String(12), nullable=True),
        sa.Column("client_token", sa.String(256), nullable=True),
        sa.Column("kms_key", sa.String(64), nullable=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        _time("created_at"), _time("ended_at", nullable=True),
        sa.UniqueConstraint("account_id", "kind", "name"),
    )
    op.create_table(
        "custom_models",
        sa.Column("id", sa.String(12), primary_key=True), _account(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("base_model_id", sa.String(256), nullable=True),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("serving", sa.String(32), nullable=True),
        sa.Column("architecture", sa.String(64), nullable=True),
        sa.Column("kms_key", sa.String(64), nullable=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("blobs", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        _time("created_at"), _time("updated_at"),
        sa.UniqueConstraint("account_id", "kind", "name"),
    )
    op.create_table(
        "provisioned_models",
        sa.Column("id", sa.String(12), primary_key=True), _account(),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("model_arn", sa.String(2048), nullable=False),
        sa.Column("model_units", sa.Integer, nullable=False),
        sa.Column("commitment", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure", sa.Text, nullable=True),
        sa.Column("tags", sa.Text, nullable=False),
        _time("created_at"), _time("updated_at"),
        sa.UniqueConstraint("account_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("provisioned_models")
    op.drop_table("custom_models")
    op.drop_table("model_jobs")
