"""access: operators, policies and attachments, KMS-style keys, encrypted files, cache generations

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="Active"))
    with op.batch_alter_table("principals") as batch:
        batch.add_column(sa.Column("is_operator", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.create_unique_constraint("uq_principals_account_kind_name", ["account_id", "kind", "name"])
    # The first account's admin ran the service before operators existed: it is the operator.
    op.execute("UPDATE principals SET is_operator = TRUE WHERE is_admin = TRUE AND account_id = "
               "(SELECT id FROM accounts ORDER BY created_at LIMIT 1)")
    op.create_table(
        "policies",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.id"), nullable=False, index=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.String(1000), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("account_id", "name"),
    )
    op.create_table(
        "policy_attachments",
        sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.id"), nullable=False, index=True),
        sa.Column("principal_id", sa.String(32), sa.ForeignKey("principals.id"), primary_key=True),
        sa.Column("policy_arn", sa.String(512), primary_key=True),
    )
    op.create_table(
        "kms_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.id"), nullable=False, index=True),
        sa.Column("manager", sa.String(16), nullable=False),
        sa.Column("description", sa.String(8192), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("material_wrapped", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deletion_date", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "files",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.id"), nullable=False, index=True),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("filename_encrypted", sa.LargeBinary, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("kms_key_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "generations",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("generations", "files", "kms_keys", "policy_attachments", "policies"):
        op.drop_table(table)
    with op.batch_alter_table("principals") as batch:
        batch.drop_constraint("uq_principals_account_kind_name", type_="unique")
        batch.drop_column("is_operator")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("status")
