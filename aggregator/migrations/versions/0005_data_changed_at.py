"""state: when the data the feeds show last changed, and when the store was made

Revision ID: 0005
Revises: 0004
"""

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def micros(moment: datetime) -> int:
    if moment.tzinfo is None:  # stored as naive UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def upgrade() -> None:
    # Microseconds since the epoch; no change yet is 0. `created_at` dates
    # the feeds of a store that never held an item.
    bind = op.get_bind()
    newest = bind.execute(sa.text("SELECT max(updated) FROM items")).scalar()
    if isinstance(newest, str):  # SQLite returns its text form
        newest = datetime.fromisoformat(newest)
    state = sa.table('state', sa.column('key', sa.String), sa.column('value', sa.BigInteger))
    op.bulk_insert(state, [{'key': 'data_changed_at', 'value': micros(newest) if newest else 0},
                           {'key': 'created_at', 'value': micros(datetime.now(timezone.utc))}])


def downgrade() -> None:
    op.execute("DELETE FROM state WHERE key IN ('data_changed_at', 'created_at')")
