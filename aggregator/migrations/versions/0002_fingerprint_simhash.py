"""fingerprints: keyed by (kind, value, item_id), keeping the SimHash of band keys

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _fingerprints(name: str, simhash: bool) -> None:
    columns = [
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('value', sa.String(length=40), nullable=False),
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
    ]
    if simhash:
        columns.append(sa.Column('simhash', sa.BigInteger(), nullable=True))
        columns.append(sa.PrimaryKeyConstraint('kind', 'value', 'item_id', name='pk_fingerprints',
                                               postgresql_include=['simhash']))
        op.create_table(name, *columns, sqlite_with_rowid=False)
    else:
        columns.insert(0, sa.Column('id', sa.Integer(), nullable=False))
        columns.append(sa.PrimaryKeyConstraint('id'))
        columns.append(sa.UniqueConstraint('kind', 'value', 'item_id', name='uq_fingerprint'))
        op.create_table(name, *columns)


def _replace(simhash: bool) -> None:
    # Rebuilt rather than altered: SQLite cannot change a table's key.
    _fingerprints('fingerprints_next', simhash)
    op.execute('INSERT INTO fingerprints_next (kind, value, item_id) '
               'SELECT kind, value, item_id FROM fingerprints')
    op.drop_index('ix_fingerprints_item', table_name='fingerprints')
    op.drop_table('fingerprints')
    op.rename_table('fingerprints_next', 'fingerprints')
    op.create_index('ix_fingerprints_item', 'fingerprints', ['item_id'], unique=False)


def upgrade() -> None:
    # Rows written before keep a NULL SimHash: their items remain candidates
    # on any shared band, as they always were.
    _replace(simhash=True)


def downgrade() -> None:
    _replace(simhash=False)
