"""The service on the restored database: the team's drill command started, the smoke verdicts run.

The drill's last step proves recovery the way an operator would: a service answers on the
restored copy, judged by the smoke gate's own verdicts.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from opsverify import cleanup
from opsverify.config import Profile
from opsverify.dr.drill import SmokeOutcome
from opsverify.dr.errors import DrError
from opsverify.dr.tools import expand
from opsverify.services import free_port, wait_for_port
from opsverify.smoke.probes import HttpProbe
from opsverify.smoke.verdicts import endpoint_failure, readiness_path, wait_until_ready
from opsverify.target import Target

DRILL_START_TIMEOUT_S = 60.0


def smoke_on(profile: Profile, base_url: str, started: float) -> SmokeOutcome:
    """The smoke gate's own verdicts, against the service running on the restored database."""
    # The service on the restored copy is a target of its own: same profile, its own URL and database.
    target = Target(profile=profile, base_url=base_url, database_url=None, redis_url=None)
    failures: dict[str, str] = {}
    exchanges: list[str] = []
    with HttpProbe(base_url) as http:
        path = readiness_path(profile)
        if path is not None:
            poll = wait_until_ready(http, path, profile.smoke.ready_timeout_s)
            exchanges.append(poll.last.exchange())
            if not poll.satisfied:
                failures[path] = (f"not ready within {profile.smoke.ready_timeout_s:.0f} s on the restored database; "
                                  f"last: {poll.last.describe()}")
                return SmokeOutcome(base_url, failures, time.monotonic() - started, exchanges)
        for endpoint in profile.smoke.endpoints:
            result = http.request(endpoint.method, endpoint.path, headers=target.endpoint_headers(endpoint))
            exchanges.append(result.exchange())
            failure = endpoint_failure(result, endpoint)
            if failure:
                failures[f"{endpoint.method} {endpoint.path}"] = failure
    return SmokeOutcome(base_url, failures, time.monotonic() - started, exchanges)


@contextlib.contextmanager
def drill_command(command: str, url: str, log_path: Path) -> Iterator[str]:
    """`backup.drill_command` with {dsn} {port}: the team's service started on the restored database."""
    port = free_port()
    line = expand(command, {"dsn": url, "port": str(port)})
    with log_path.open("ab") as log:
        proc = subprocess.Popen(line, shell=True, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    token = cleanup.register(f"drill command :{port}", lambda: cleanup.stop_process(proc))
    try:
        if not wait_for_port("127.0.0.1", port, DRILL_START_TIMEOUT_S):
            raise DrError(
                f"backup.drill_command did not listen on 127.0.0.1:{port} within {DRILL_START_TIMEOUT_S:.0f} s "
                f"(exit {proc.poll()}; log {log_path})"
            )
        yield f"http://127.0.0.1:{port}"
    finally:
        cleanup.stop_process(proc)
        cleanup.done(token)
