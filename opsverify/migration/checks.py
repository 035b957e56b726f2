"""The checks the suites phrase as promises: stairway, full downgrade, rows kept."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from opsverify.migration.dbsession import DbSession
from opsverify.migration.errors import StepFailed, labelled
from opsverify.migration.schema import Schema, current_heads, schema_snapshot
from opsverify.migration.seed import compare_row_counts, describe_counts, row_counts
from opsverify.migration.templates import TemplateChain, TemplateUnavailable
from opsverify.migration.tree import Revision

# Checks the suites phrase as promises


@dataclass(frozen=True)
class CheckOutcome:
    revision: str
    # None: passed; otherwise the failure (labelled) or the skip reason.
    failure: str | None = None
    skip: str | None = None
    seconds: float = 0.0
    notes: tuple[str, ...] = ()


def stairway(
    chain: TemplateChain, rev: str, *, irreversible: Sequence[str] = (), lowest: str | None = None
) -> CheckOutcome:
    """Upgrade to REV, downgrade to its parent (schema must match the parent's), upgrade again."""
    tree = chain.tree
    revision = tree.revisions[rev]
    started = time.monotonic()
    if rev in irreversible:
        return CheckOutcome(rev, skip=f"{rev}: explicit lower bound (listed in migrations.irreversible)")
    if lowest is not None and (rev == lowest or rev in tree.ancestors(lowest)):
        return CheckOutcome(
            rev, skip=f"{rev}: at or below migrations.lowest = {lowest}; its downgrade is not required"
        )
    with chain.clone(revision.parents, consume=chain.single_consumer(revision.parents)) as (dbname, parent):
        outcome, state, schema = _stairway_steps(chain.session(dbname), revision, parent.schema)
        if state is not None and schema is not None:
            # The database is at REV again with REV's schema: it becomes the template its children start from.
            chain.adopt(state, dbname, schema)
        if outcome is not None:
            return outcome
    return CheckOutcome(rev, seconds=time.monotonic() - started)


def _stairway_steps(
    db: DbSession, revision: Revision, parent_schema: Schema
) -> tuple[CheckOutcome | None, tuple[str, ...] | None, Schema | None]:
    """(failure or skip, state to adopt the database as, its schema).

    The three steps run in one alembic run (`between` compares the schema after the downgrade),
    so the check pays for env.py and the version-table read once, not three times."""
    rev = revision.id
    context = (("Revision", revision.describe()), ("Parent", ", ".join(revision.parents) or "base"))
    mismatch: list[str] = []
    again: list[Schema] = []

    def between(step: int, heads: tuple[str, ...]) -> bool:
        if step == 2:
            # No snapshot of the first upgrade: the second must reach the same schema, which the
            # child's own stairway proves (its downgrade is compared with this one).
            again.append(db.schema_in_run())
        if step != 1:
            return True
        downgraded = db.schema_in_run()
        if downgraded == parent_schema:
            return True
        missing, extra = parent_schema.diff(downgraded)
        if heads != tuple(sorted(revision.parents)):
            headline = f"downgrade of {rev} did not reach its parent"
        elif extra and not missing:
            headline = f"downgrade of {rev} leaves behind what its upgrade created (a no-op or partial downgrade)"
        else:
            headline = f"downgrade of {rev} does not restore the schema of its parent"
        mismatch.append(
            labelled(
                headline,
                *context,
                ("Expected (at parent) but missing", "\n".join(missing) or "-"),
                ("Left behind by downgrade", "\n".join(extra) or "-"),
                help=f"make downgrade() in {revision.path.name} undo every operation of upgrade()",
            )
        )
        return False

    try:
        db.walk([("upgrade", rev), ("downgrade", db.tree.downgrade_target(rev)), ("upgrade", rev)], between)
    except StepFailed as exc:
        if exc.phase == 0:
            failure = labelled(f"upgrade to {rev} failed", *context, ("Error", exc.detail))
            return CheckOutcome(rev, failure=failure), None, None
        if exc.phase == 2:
            failure = labelled(f"upgrade to {rev} after its downgrade failed", *context, ("Error", exc.detail))
            return CheckOutcome(rev, failure=failure), None, None
        if exc.not_implemented:
            skip = CheckOutcome(rev, skip=f"{rev}: explicit lower bound (downgrade raises NotImplementedError)")
            # Still usable by its children at REV: with a transaction per migration the upgrade
            # stayed; with one transaction per run (alembic's default env.py) it rolled back too.
            if db.heads() != (rev,):
                try:
                    db.upgrade(rev)
                except StepFailed:
                    return skip, None, None
            return skip, (rev,), db.schema()
        failure = labelled(
            f"downgrade of {rev} failed: the revision is irreversible but not declared as such",
            *context,
            ("Error", exc.detail),
            help=f"fix downgrade(), or declare it: raise NotImplementedError in {revision.path.name}"
            f" or list '{rev}' in migrations.irreversible",
        )
        return CheckOutcome(rev, failure=failure), None, None
    if mismatch:
        return CheckOutcome(rev, failure=mismatch[0]), None, None
    return None, (rev,), again[0]


def full_downgrade(
    chain: TemplateChain, *, irreversible: Sequence[str] = (), lowest: str | None = None
) -> tuple[str | None, list[str]]:
    """Downgrade head → lowest allowed revision one revision at a time. (failure, notes)."""
    tree = chain.tree
    notes: list[str] = []
    floor: set[str] = set()
    if lowest:
        floor = {lowest, *tree.ancestors(lowest)}
    with chain.clone(tree.heads) as (dbname, _template):
        url = chain.server.url(dbname)
        stopped: set[str] = set()
        for _ in range(len(tree.revisions) + 1):
            current = [h for h in current_heads(url) if h not in stopped and h not in floor]
            if not current:
                break
            rev = current[-1]
            if rev in irreversible:
                notes.append(f"stopped at {rev}: listed in migrations.irreversible (explicit lower bound)")
                stopped.add(rev)
                continue
            try:
                tree.downgrade(url, tree.downgrade_target(rev))
            except StepFailed as exc:
                if exc.not_implemented:
                    notes.append(
                        f"stopped at {rev}: downgrade raises NotImplementedError (explicit lower bound)"
                    )
                    stopped.add(rev)
                    continue
                return (
                    labelled(
                        f"full downgrade stopped at {rev}",
                        ("Revision", tree.revisions[rev].describe()),
                        ("Lowest allowed", lowest or "base"),
                        ("Error", exc.detail),
                        help="fix its downgrade(), or declare it irreversible "
                        "(NotImplementedError or migrations.irreversible)",
                    ),
                    notes,
                )
        remaining = current_heads(url)
    notes.append(f"reached: {', '.join(remaining) or 'base'}")
    return None, notes


def upgrade_keeps_rows(chain: TemplateChain, rev: str, *, exempt: bool) -> CheckOutcome:
    """Rows seeded at the parent survive the upgrade to REV (tables on both sides keep their counts)."""
    tree = chain.tree
    revision = tree.revisions[rev]
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:
            dbname, parent = stack.enter_context(
                chain.clone(revision.parents, consume=chain.single_consumer(revision.parents))
            )
        except TemplateUnavailable as exc:
            reason = str(exc).splitlines()[0]
            return CheckOutcome(
                rev, skip=f"cannot seed the parent of {rev}: {reason} (its own check reports it)"
            )
        url = chain.server.url(dbname)
        before = row_counts(url)
        seeded = parent.seed.describe() if parent.seed else "none"
        try:
            tree.upgrade(url, rev)
        except StepFailed as exc:
            return CheckOutcome(
                rev,
                failure=labelled(
                    f"upgrade to {rev} fails on a database that holds rows",
                    ("Revision", revision.describe()),
                    ("Rows before", ", ".join(f"{t}={n}" for t, n in before.items()) or "-"),
                    ("Seeded", seeded),
                    ("Error", exc.detail),
                    help="production has rows: give a new NOT NULL column a default, "
                    "or backfill before constraining",
                ),
            )
        after = row_counts(url)
        losses = compare_row_counts(before, after)
        if losses and not exempt:
            return CheckOutcome(
                rev,
                failure=labelled(
                    f"upgrade to {rev} changed row counts",
                    ("Revision", revision.describe()),
                    ("Tables", describe_counts(losses)),
                    help=f"if {rev} is a data migration, set `data_change = True` in {revision.path.name} "
                    f"or list it in migrations.data_changes",
                ),
            )
        notes = (f"declared data change: {describe_counts(losses)}",) if losses else ()
        chain.adopt((rev,), dbname, schema_snapshot(url))
        return CheckOutcome(
            rev, seconds=time.monotonic() - started, notes=(f"rows before: {before}", f"seeded: {seeded}", *notes)
        )


def downgrade_keeps_rows(
    chain: TemplateChain, *, irreversible: Sequence[str] = (), exempt: Sequence[str] = ()
) -> CheckOutcome:
    """`downgrade -1` from head on a seeded database loses no rows of tables on both sides."""
    tree = chain.tree
    heads = tree.heads
    if len(heads) != 1:
        return CheckOutcome(
            ",".join(heads), skip=f"{len(heads)} heads: `downgrade -1` is ambiguous (see test_single_head)"
        )
    head = heads[0]
    revision = tree.revisions[head]
    if head in irreversible:
        return CheckOutcome(head, skip=f"{head}: explicit lower bound (listed in migrations.irreversible)")
    with contextlib.ExitStack() as stack:
        try:
            dbname, template = stack.enter_context(chain.clone(heads))
        except TemplateUnavailable as exc:
            reason = str(exc).splitlines()[0]
            return CheckOutcome(head, skip=f"no seeded database at head: {reason} (its own check reports it)")
        url = chain.server.url(dbname)
        before = row_counts(url)
        target = tree.downgrade_target(head)
        try:
            tree.downgrade(url, target)
        except StepFailed as exc:
            if exc.not_implemented:
                return CheckOutcome(
                    head, skip=f"{head}: explicit lower bound (downgrade raises NotImplementedError)"
                )
            return CheckOutcome(
                head,
                failure=labelled(
                    f"downgrade -1 from head {head} fails on a database that holds rows",
                    ("Revision", revision.describe()),
                    ("Error", exc.detail),
                ),
            )
        after = row_counts(url)
        losses = [x for x in compare_row_counts(before, after) if x.after < x.before]
        if losses and not (revision.data_change or head in exempt):
            return CheckOutcome(
                head,
                failure=labelled(
                    f"downgrade -1 from head {head} loses rows",
                    ("Revision", revision.describe()),
                    ("Downgraded to", target),
                    ("Tables", describe_counts(losses)),
                    help=f"a rollback must not destroy data written since the deploy: fix downgrade() in "
                    f"{revision.path.name}",
                ),
            )
        seeded = template.seed.describe() if template.seed else "none"
        return CheckOutcome(head, notes=(f"rows before: {before}", f"rows after: {after}", f"seeded: {seeded}"))
