"""items: the original address of an item, when a source gave one

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases (SQLite 3.35 and newer drops a column
# in place): a batch rebuild of `items` would drop the table, and with foreign
# keys on, its cascades would empty every table that refers to it.


def upgrade() -> None:
    # Items stored before had no source that gave one: NULL.
    op.add_column('items', sa.Column('link', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('items', 'link')
