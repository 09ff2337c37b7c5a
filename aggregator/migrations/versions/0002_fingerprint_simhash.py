"""fingerprints keep the whole SimHash on band keys

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows written before stay NULL: their items remain candidates on any
    # shared band, as they always were.
    with op.batch_alter_table('fingerprints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('simhash', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('fingerprints', schema=None) as batch_op:
        batch_op.drop_column('simhash')
