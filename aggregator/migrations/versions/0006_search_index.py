"""search index: every item's words (SQLite FTS5 table, PostgreSQL tsvector with a GIN index)

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The index is derived data: built from the stored items with the words
    # the running code makes, as the writer keeps it from now on.
    from aggregator.storage.search import build_index

    build_index(op.get_bind())


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE items_search")
    else:
        op.drop_index('ix_items_search', table_name='items')
        op.drop_column('items', 'search_vector')
