"""item_tags: the item's published date, indexed per tag in feed order

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa
import aggregator.storage


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_item_tags_tag', table_name='item_tags')
    # Added empty, filled from the items, then required: a column that is
    # NOT NULL from the start would need a default no row should ever keep.
    op.add_column('item_tags', sa.Column('published', aggregator.storage.UTCDateTime(), nullable=True))
    op.execute('UPDATE item_tags SET published = '
               '(SELECT items.published FROM items WHERE items.id = item_tags.item_id)')
    with op.batch_alter_table('item_tags') as batch_op:
        batch_op.alter_column('published', existing_type=aggregator.storage.UTCDateTime(), nullable=False)
    op.create_index('ix_item_tags_newest', 'item_tags',
                    ['tag_id', sa.text('published DESC'), 'item_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_item_tags_newest', table_name='item_tags')
    with op.batch_alter_table('item_tags') as batch_op:
        batch_op.drop_column('published')
    op.create_index('ix_item_tags_tag', 'item_tags', ['tag_id', 'item_id'], unique=False)
