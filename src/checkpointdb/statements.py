"""Every statement of the repository, as SQLAlchemy Core constructs.

Imported only to compile them: an SQLite store runs the text compiled in
advance (:mod:`checkpointdb.sqlite_statements`), so opening one and its
everyday calls never import SQLAlchemy (about 300 ms of imports).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    String,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.sql.elements import BindParameter, ClauseElement

from .checkpoint import FORK_HISTORIES
from .models import checkpoints_table, sessions_table

_cp = checkpoints_table.c
_s = sessions_table.c

_SESSION_COLUMNS = (
    _s.id,
    _s.created_at,
    _s.updated_at,
    _s.checkpoint_count,
    _s.last_seq,
    _s.payload_bytes,
    _s["metadata"],
    _s.forked_from,
    _s.max_checkpoints,
    _s.compress_after,
    _s.keep_recent,
)
_POLICY_COLUMNS = (_s.max_checkpoints, _s.compress_after, _s.keep_recent)
_CHECKPOINT_COLUMNS = (
    _cp.seq,
    _cp.name,
    _cp.created_at,
    _cp.data,
    _cp["metadata"],
    _cp.pinned,
    _cp.parent_seq,
)

def _first_seq(alias_name: str) -> Any:
    """Scalar subquery: the session's oldest live seq."""
    first = checkpoints_table.alias(alias_name)
    return (
        select(func.min(first.c.seq))
        .where(first.c.session_id == bindparam("session_id"))
        .scalar_subquery()
    )


def _recent_cutoff() -> Any:
    """Scalar subquery: the oldest seq among the newest ``:keep_recent`` rows."""
    recent_rows = checkpoints_table.alias("recent_rows")
    recent = (
        select(recent_rows.c.seq)
        .where(recent_rows.c.session_id == bindparam("session_id"))
        .order_by(recent_rows.c.seq.desc())
        .limit(bindparam("keep_recent"))
        .subquery("recent")
    )
    return select(func.coalesce(func.min(recent.c.seq), bindparam("no_cutoff"))).scalar_subquery()


def _newest_of_each_name(cutoff: Any) -> Select[Any]:
    named = checkpoints_table.alias("named")
    return (
        select(func.max(named.c.seq))
        .where(named.c.session_id == bindparam("session_id"), named.c.seq < cutoff)
        .group_by(named.c.name)
    )


def _compaction_victims() -> ColumnElement[bool]:
    """The rows compaction deletes.

    Kept: the first row, the newest ``:keep_recent`` rows, the newest row of
    each name among the rest, pinned rows, and rows created at or after
    ``:older_than``.
    """
    cutoff = _recent_cutoff()
    victims: ColumnElement[bool] = (
        (_cp.session_id == bindparam("session_id"))
        & (_cp.seq > _first_seq("first_row"))
        & (_cp.seq < cutoff)
        & ~_cp.pinned
        & (_cp.created_at < bindparam("older_than"))
        & _cp.seq.not_in(_newest_of_each_name(cutoff))
    )
    return victims


def _keep_reason() -> Any:
    """Why a row that compaction did not delete is kept (same parameters)."""
    cutoff = _recent_cutoff()
    return case(
        (_cp.seq == _first_seq("first_row"), "first"),
        (_cp.pinned, "pinned"),
        (_cp.seq >= cutoff, "recent"),
        (_cp.created_at >= bindparam("older_than"), "too_recent"),
        else_="newest_of_name",
    )


def _cap_victims() -> ColumnElement[bool]:
    """The ``:excess`` oldest unpinned rows between the first and the newest (the cap).

    The newest row is never a victim: a checkpoint that ``create`` just
    returned stays, however small the cap.
    """
    oldest = checkpoints_table.alias("oldest")
    newest = checkpoints_table.alias("newest")
    victims = (
        select(oldest.c.seq)
        .where(
            oldest.c.session_id == bindparam("session_id"),
            oldest.c.seq > _first_seq("first_row"),
            oldest.c.seq
            < select(func.max(newest.c.seq))
            .where(newest.c.session_id == bindparam("session_id"))
            .scalar_subquery(),
            ~oldest.c.pinned,
        )
        .order_by(oldest.c.seq)
        .limit(bindparam("excess"))
    )
    return (_cp.session_id == bindparam("session_id")) & _cp.seq.in_(victims)


def _chain(session: str) -> Any:
    """Recursive CTE: the row ``:seq`` of session ``:<session>`` and its live ancestors.

    Each step goes to a strictly lower seq, so even a damaged link cannot loop.
    """
    start = checkpoints_table.alias("start")
    chain = (
        select(start.c.seq, start.c.parent_seq)
        .where(start.c.session_id == bindparam(session), start.c.seq == bindparam("seq"))
        .cte("chain", recursive=True)
    )
    up = checkpoints_table.alias("up")
    return chain.union_all(
        select(up.c.seq, up.c.parent_seq).where(
            up.c.session_id == bindparam(session),
            up.c.seq == chain.c.parent_seq,
            up.c.seq < chain.c.seq,
        )
    )


def _fork_copy(history: str, dialect_name: str) -> Any:
    """INSERT ... SELECT: copy rows of ``:source`` into ``:target``, renumbered from 1.

    Parent links are remapped to the new seqs; a parent that is not copied
    becomes NULL. SQLite looks the parent's new seq up with a correlated
    subquery, for which it indexes the numbered rows (a LEFT JOIN scanned
    them once per row: 23 s for 20,000 rows); PostgreSQL hash-joins.
    """
    src = checkpoints_table.alias("src")
    rows = checkpoints_table.alias("rows")
    chosen: ColumnElement[bool]
    if history == "latest":
        chosen = rows.c.seq == bindparam("seq")
    elif history == "lineage":
        chain = _chain("source")
        chosen = rows.c.seq.in_(select(chain.c.seq))
    else:
        chosen = rows.c.seq <= bindparam("seq")
    numbered = (
        select(
            rows.c.seq.label("old_seq"),
            func.row_number().over(order_by=rows.c.seq).label("new_seq"),
        )
        .where(rows.c.session_id == bindparam("source"), chosen)
        .cte("numbered")
    )
    parent = numbered.alias("parent")
    copies = numbered.join(
        src, (src.c.session_id == bindparam("source")) & (src.c.seq == numbered.c.old_seq)
    )
    new_parent: Any
    if dialect_name == "sqlite":
        new_parent = (
            select(parent.c.new_seq).where(parent.c.old_seq == src.c.parent_seq).scalar_subquery()
        )
    else:
        copies = copies.outerjoin(parent, parent.c.old_seq == src.c.parent_seq)
        new_parent = parent.c.new_seq
    copied = (
        select(
            bindparam("target", type_=String),
            numbered.c.new_seq,
            src.c.name,
            src.c.created_at,
            src.c.data,
            src.c["metadata"],
            src.c.pinned,
            src.c.payload_bytes,
            new_parent,
        )
        .select_from(copies)
    )
    columns = [
        "session_id", "seq", "name", "created_at", "data", "metadata", "pinned",
        "payload_bytes", "parent_seq",
    ]  # fmt: skip
    return checkpoints_table.insert().from_select(columns, copied)


def _fork_totals() -> Any:
    """UPDATE the fork's session row: counters from its rows, origin, the source's settings.

    A policy column given as ``:max_checkpoints`` (etc.) wins over the source's.
    """
    rows = checkpoints_table.alias("rows")
    source = sessions_table.alias("source")

    def of_rows(expression: Any) -> Any:
        return select(expression).where(rows.c.session_id == bindparam("target")).scalar_subquery()

    def of_source(column: str) -> Any:
        return select(source.c[column]).where(source.c.id == bindparam("source")).scalar_subquery()

    return (
        update(sessions_table)
        .where(_s.id == bindparam("target"))
        .values(
            last_seq=of_rows(func.coalesce(func.max(rows.c.seq), 0)),
            checkpoint_count=of_rows(func.count()),
            payload_bytes=of_rows(func.coalesce(func.sum(rows.c.payload_bytes), 0)),
            forked_from=bindparam("forked_from"),
            updated_at=bindparam("now"),
            max_checkpoints=func.coalesce(
                bindparam("max_checkpoints", type_=Integer), of_source("max_checkpoints")
            ),
            compress_after=func.coalesce(
                bindparam("compress_after", type_=Integer), of_source("compress_after")
            ),
            keep_recent=func.coalesce(
                bindparam("keep_recent", type_=Integer), of_source("keep_recent")
            ),
            **{"metadata": of_source("metadata")},
        )
    )


def _select_checkpoints(*where: ColumnElement[bool]) -> Select[Any]:
    return select(*_CHECKPOINT_COLUMNS).where(_cp.session_id == bindparam("session_id"), *where)


def _dialect_insert(dialect_name: str) -> Any:
    """The dialect's INSERT construct (it has ON CONFLICT), importing only that dialect.

    An SQLite store never loads the PostgreSQL dialect (73 ms of imports).
    """
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _upsert_session(dialect_name: str) -> Any:
    """INSERT the session row or bump its counters, returning its counters and policy.

    A policy parameter that is NULL leaves the stored column as it is.
    """
    insert = _dialect_insert(dialect_name)
    stmt = insert(sessions_table).values(
        id=bindparam("session_id"),
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
        last_seq=bindparam("seq_delta"),
        checkpoint_count=bindparam("count_delta"),
        payload_bytes=bindparam("bytes_delta"),
        max_checkpoints=bindparam("max_checkpoints", type_=Integer),
        compress_after=bindparam("compress_after", type_=Integer),
        keep_recent=bindparam("keep_recent", type_=Integer),
        **{"metadata": literal_column("'{}'")},
    )
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[_s.id],
        set_={
            "last_seq": _s.last_seq + excluded.last_seq,
            "checkpoint_count": _s.checkpoint_count + excluded.checkpoint_count,
            "payload_bytes": _s.payload_bytes + excluded.payload_bytes,
            "updated_at": excluded.updated_at,
            "max_checkpoints": func.coalesce(excluded.max_checkpoints, _s.max_checkpoints),
            "compress_after": func.coalesce(excluded.compress_after, _s.compress_after),
            "keep_recent": func.coalesce(excluded.keep_recent, _s.keep_recent),
        },
    ).returning(_s.last_seq, _s.checkpoint_count, *_POLICY_COLUMNS)


def _upsert_session_metadata(dialect_name: str) -> Any:
    """INSERT the session row with this metadata, or replace the metadata of the existing one."""
    insert = _dialect_insert(dialect_name)
    stmt = insert(sessions_table).values(
        id=bindparam("session_id"),
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
        **{"metadata": bindparam("metadata")},
    )
    return stmt.on_conflict_do_update(
        index_elements=[_s.id],
        set_={"metadata": stmt.excluded["metadata"], "updated_at": stmt.excluded.updated_at},
    )


def build_statements(name: str) -> dict[str, ClauseElement]:
    """Every statement the repository runs on dialect ``name``, by name.

    ``fork_copy[lineage]`` names one of a family; ``lock_row`` is PostgreSQL's only.
    """
    statements: dict[str, ClauseElement] = {}
    session: BindParameter[str] = bindparam("session_id")
    seq: BindParameter[int] = bindparam("seq")
    statements["allocate"] = (_upsert_session(name))
    statements["set_metadata"] = (_upsert_session_metadata(name))
    row_values = {
        "session_id": session,
        "seq": bindparam("seq"),
        "name": bindparam("name"),
        "created_at": bindparam("created_at"),
        "data": bindparam("data"),
        "pinned": bindparam("pinned"),
        "payload_bytes": bindparam("payload_bytes"),
        "metadata": bindparam("metadata"),
    }
    statements["insert"] = (
        checkpoints_table.insert().values(
            **row_values, parent_seq=bindparam("parent_seq", type_=BigInteger)
        )
    )
    previous = checkpoints_table.alias("previous")
    # The parent by default: the newest live row, read in the INSERT itself.
    statements["insert_on_newest"] = (
        checkpoints_table.insert()
        .values(
            **row_values,
            parent_seq=select(func.max(previous.c.seq))
            .where(previous.c.session_id == session)
            .scalar_subquery(),
        )
        .returning(_cp.parent_seq)
    )
    if name == "postgresql":
        # The seq the session upsert just took, read in the INSERT itself, so
        # both statements go to the server together (Repository.append).
        statements["insert_at_last_seq"] = (
            checkpoints_table.insert()
            .values(
                **{
                    **row_values,
                    "seq": select(_s.last_seq).where(_s.id == session).scalar_subquery(),
                },
                parent_seq=select(func.max(previous.c.seq))
                .where(previous.c.session_id == session)
                .scalar_subquery(),
            )
            .returning(_cp.parent_seq)
        )
    statements["exists"] = (
        select(_cp.seq).where(_cp.session_id == session, _cp.seq == seq)
    )
    chain = _chain("session_id")
    statements["lineage"] = (
        _select_checkpoints(_cp.seq.in_(select(chain.c.seq))).order_by(_cp.seq)
    )
    for history in FORK_HISTORIES:
        statements[f"fork_copy[{history}]"] = _fork_copy(history, name)
    statements["fork_totals"] = (_fork_totals())
    statements["get"] = (_select_checkpoints(_cp.seq == seq))
    statements["latest"] = (_select_checkpoints().order_by(_cp.seq.desc()).limit(1))
    statements["by_name"] = (
        _select_checkpoints(_cp.name == bindparam("name"))
        .order_by(_cp.seq.desc())
        .limit(bindparam("limit"))
    )
    statements["page"] = (
        _select_checkpoints(_cp.seq > bindparam("after"))
        .order_by(_cp.seq)
        .limit(bindparam("limit"))
    )
    statements["page_desc"] = (
        _select_checkpoints(_cp.seq < bindparam("before"))
        .order_by(_cp.seq.desc())
        .limit(bindparam("limit"))
    )
    statements["since"] = (
        _select_checkpoints(_cp.created_at > bindparam("start")).order_by(_cp.seq)
    )
    statements["between"] = (
        _select_checkpoints(
            _cp.created_at >= bindparam("start"), _cp.created_at <= bindparam("end")
        ).order_by(_cp.seq)
    )
    statements["first"] = (_select_checkpoints().order_by(_cp.seq).limit(1))
    statements["name_counts"] = (
        select(_cp.name, func.count())
        .where(_cp.session_id == session)
        .group_by(_cp.name)
        .order_by(_cp.name)
    )
    statements["session"] = (select(*_SESSION_COLUMNS).where(_s.id == session))
    statements["sessions"] = (select(*_SESSION_COLUMNS).order_by(_s.id))
    statements["count"] = (select(_s.checkpoint_count).where(_s.id == session))
    # PostgreSQL only: SQLite's BEGIN IMMEDIATE already holds the one write lock.
    if name == "postgresql":
        statements["lock_row"] = (
            select(_s.last_seq).where(_s.id == session).with_for_update(key_share=True)
        )
    removed = (_cp.seq, _cp.payload_bytes)
    statements["compact"] = (
        delete(checkpoints_table).where(_compaction_victims()).returning(*removed)
    )
    reason = _keep_reason().label("reason")
    statements["keep_reasons"] = (
        select(reason, func.count())
        .where(_cp.session_id == session)
        .group_by(reason)
        .order_by(reason)
    )
    statements["cap"] = (
        delete(checkpoints_table).where(_cap_victims()).returning(*removed)
    )
    statements["keep_newest"] = (
        delete(checkpoints_table)
        .where(_cp.session_id == session, _cp.seq < _recent_cutoff())
        .returning(*removed)
    )
    statements["pinned_count"] = (
        select(func.count()).where(_cp.session_id == session, _cp.pinned)
    )
    statements["clear"] = (
        delete(checkpoints_table).where(_cp.session_id == session).returning(*removed)
    )
    newest = checkpoints_table.alias("newest")
    statements["expire"] = (
        delete(checkpoints_table)
        .where(
            _cp.session_id == session,
            ~_cp.pinned,
            _cp.created_at < bindparam("older_than"),
            _cp.seq
            < select(func.max(newest.c.seq))
            .where(newest.c.session_id == session)
            .scalar_subquery(),
        )
        .returning(*removed)
    )
    statements["set_pinned"] = (
        update(checkpoints_table)
        .where(_cp.session_id == session, _cp.seq == seq)
        .values(pinned=bindparam("pinned"))
    )
    statements["delete_one"] = (
        delete(checkpoints_table)
        .where(_cp.session_id == session, _cp.seq == seq)
        .returning(*removed)
    )
    statements["delete_after"] = (
        delete(checkpoints_table)
        .where(_cp.session_id == session, _cp.seq > seq)
        .returning(*removed)
    )
    statements["delete_session"] = (delete(sessions_table).where(_s.id == session))
    statements["adjust_count"] = (
        update(sessions_table)
        .where(_s.id == session)
        .values(
            checkpoint_count=_s.checkpoint_count + bindparam("delta"),
            payload_bytes=_s.payload_bytes + bindparam("bytes_delta"),
            updated_at=bindparam("now"),
        )
    )
    statements["set_counter"] = (
        update(sessions_table)
        .where(_s.id == session)
        .values(
            last_seq=bindparam("last_seq"),
            checkpoint_count=_s.checkpoint_count + bindparam("delta"),
            payload_bytes=_s.payload_bytes + bindparam("bytes_delta"),
            updated_at=bindparam("now"),
        )
    )
    # Times of checkpoints without their payloads, for timelines and session listings.
    span_columns = (
        _cp.session_id,
        func.count(),
        func.min(_cp.created_at),
        func.max(_cp.created_at),
    )
    statements["spans"] = (
        select(*span_columns).group_by(_cp.session_id).order_by(_cp.session_id)
    )
    statements["session_span"] = (
        select(*span_columns).where(_cp.session_id == session).group_by(_cp.session_id)
    )
    statements["times"] = (select(_cp.created_at))
    statements["session_times"] = (select(_cp.created_at).where(_cp.session_id == session))
    return statements
