"""Redis backup: BGSAVE, copy dump.rdb, start a fresh Redis on it — every key comes back."""

from __future__ import annotations

import pytest

from fixtures.dr import DrSession, redact_lines
from opsverify.dr import DrError, human_bytes, redis_drill

pytestmark = pytest.mark.dr


def test_redis_snapshot_restores_every_key(dr: DrSession, ops, request, report_extra) -> None:
    """A Redis backup is only as good as the RDB it copies: keys, types, TTLs and values must survive."""
    if not ops.profile.backup.redis:
        pytest.skip("backup.redis = false in the profile")
    if not ops.owns_target:
        pytest.skip("the Redis drill writes marker keys, so it runs only on the suite's own Redis")
    server = request.getfixturevalue("redis_server")
    failure: str | None = None
    try:
        result = redis_drill(
            server.host,
            server.port,
            server.password,
            f"{server.prefix}dr:",
            dr.run.plan.workdir,
            command=ops.profile.backup.redis_command,
        )
    except DrError as exc:
        failure = str(exc)
    # Outside the except block: the report shows the drill's message, not an exception chain.
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    report_extra.text(
        "redis",
        f"{result.how}: RDB {human_bytes(result.rdb_bytes)}, {result.live_keys} keys live, "
        f"{result.restored_keys} restored, {result.elapsed_s:.1f} s",
    )
    assert not result.problems, (
        f"Redis RDB ({result.how}) does not restore what was live ({result.live_keys} keys live, "
        f"{result.restored_keys} restored):\n{redact_lines(result.problems)}\n"
        f"what to do: BGSAVE and wait for it before copying dump.rdb (backup.redis_command)"
    )
