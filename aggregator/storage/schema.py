"""The tables, and the one column type every database needs spelled alike."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every database (SQLite keeps no time zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


# An item's `published` is copied here, so a tag feed reads its newest items
# as one index range, whatever the number of items the tag has: without it,
# every item of the tag would be read and sorted for each first render.
item_tags = Table(
    "item_tags",
    Base.metadata,
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
    Column("published", UTCDateTime, nullable=False),
)
# In feed order (newest first, then the earlier stored) so the range is read forwards.
Index("ix_item_tags_newest", item_tags.c.tag_id, item_tags.c.published.desc(), item_tags.c.item_id)

item_sources = Table(
    "item_sources",
    Base.metadata,
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("source_id", ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_item_sources_source", "source_id", "item_id"),
)


# Where each item was seen: one row per item on a page, rewritten when the
# page changes. Lets `aggregator eval` compare the grouping with a labelled one.
sightings = Table(
    "sightings",
    Base.metadata,
    Column("source_id", ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("title", Text, nullable=False),
    Index("ix_sightings_item", "item_id"),
)

item_links = Table(
    "item_links",
    Base.metadata,
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("related_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
)


class ItemRow(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    guid: Mapped[str] = mapped_column(String(200), unique=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    content: Mapped[str | None] = mapped_column(Text)
    published: Mapped[datetime] = mapped_column(UTCDateTime)
    updated: Mapped[datetime] = mapped_column(UTCDateTime)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    link: Mapped[str | None] = mapped_column(Text)  # the original address (migration 0004)

    tags: Mapped[list[TagRow]] = relationship(secondary=item_tags, order_by="TagRow.id")
    sources: Mapped[list[SourceRow]] = relationship(secondary=item_sources, order_by="SourceRow.path")
    related: Mapped[list[ItemRow]] = relationship(
        secondary=item_links,
        primaryjoin="ItemRow.id == item_links.c.item_id",
        secondaryjoin="ItemRow.id == item_links.c.related_id",
        order_by="ItemRow.id",
        viewonly=True,
    )

    __table_args__ = (Index("ix_items_newest", "published", "id"),)


class FingerprintRow(Base):
    """Identity keys of every sighting of an item (title, opening words,
    SimHash bands). An item keeps the keys of all the texts and titles it was
    seen with, so a later copy of any of them finds it."""

    __tablename__ = "fingerprints"

    # The key is the row: a lookup by (kind, value) reads item ids and
    # SimHashes from one B-tree, with no second read per row (on SQLite the
    # table has no rowid; PostgreSQL carries the SimHash in the index).
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    value: Mapped[str] = mapped_column(String(40), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    # On SimHash band keys, the whole SimHash of the text (signed 64-bit):
    # tells a close text from one that shares a band by chance.
    simhash: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        PrimaryKeyConstraint("kind", "value", "item_id", name="pk_fingerprints",
                             postgresql_include=["simhash"]),
        Index("ix_fingerprints_item", "item_id"),
        {"sqlite_with_rowid": False},
    )


class TagRow(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)


class SourceRow(Base):
    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(1000), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StateRow(Base):
    """Counters of the store. `data_version` goes up with every ingest that
    changed what the feeds show: servers that do not ingest themselves
    (replicas) watch it to know when to drop their cached feeds."""

    __tablename__ = "state"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


items_table = ItemRow.__table__
fingerprints_table = FingerprintRow.__table__
tags_table = TagRow.__table__
sources_table = SourceRow.__table__
