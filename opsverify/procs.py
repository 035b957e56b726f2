"""One subprocess runner: streamed output, a hard kill timer, and an owner that removes the process.

Every external tool the engine runs for a bounded job (pg_dump, pg_restore, psql, pg_amcheck, a
team's backup command) goes through `run`: the process gets its own session (so its whole group
is stopped), stderr is read line by line as it comes (a bounded tail is kept for the message),
stdout goes to a file, a sink or nowhere, and a timer stops it at `timeout_s`. Exit codes are
returned, never raised: the caller words the failure.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsverify import cleanup

TAIL_KEEP = 200
JOIN_TIMEOUT_S = 10.0


@dataclass
class ProcResult:
    returncode: int
    stderr_tail: list[str]
    elapsed_s: float


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout_s: float,
    stdin_file: Path | None = None,
    stdin_feed: Callable[[Any], None] | None = None,
    stdout_path: Path | None = None,
    stdout_sink: Callable[[bytes], None] | None = None,
    on_stderr_line: Callable[[str], None] | None = None,
    shell: bool = False,
) -> ProcResult:
    """Run `argv` to its end or to `timeout_s` (then stopped, returncode -1 unless it set one).

    stdin: a file, a feeder writing to the pipe (BrokenPipe means the tool stopped reading: its exit
    code says why), or nothing. stdout: a file, a sink given 1 MiB chunks, or discarded.
    """
    started = time.monotonic()
    opened: list[Any] = []
    stdin: Any = subprocess.DEVNULL
    if stdin_file is not None:
        stdin = stdin_file.open("rb")
        opened.append(stdin)
    elif stdin_feed is not None:
        stdin = subprocess.PIPE
    stdout: Any = subprocess.DEVNULL
    if stdout_path is not None:
        stdout = stdout_path.open("wb")
        opened.append(stdout)
    elif stdout_sink is not None:
        stdout = subprocess.PIPE
    proc = subprocess.Popen(
        argv if not shell else argv[0],  # type: ignore[arg-type]
        env=dict(env),
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        shell=shell,
        start_new_session=True,
    )
    token = cleanup.register(f"tool {Path(str(argv[0])).name}", lambda: cleanup.stop_process(proc))
    tail: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if on_stderr_line is not None:
                with contextlib.suppress(Exception):
                    on_stderr_line(line)
            tail.append(line)
            if len(tail) > TAIL_KEEP:
                del tail[: TAIL_KEEP // 2]

    def drain_stdout() -> None:
        assert proc.stdout is not None and stdout_sink is not None
        while chunk := proc.stdout.read(1 << 20):
            stdout_sink(chunk)

    readers = [threading.Thread(target=read_stderr, daemon=True)]
    if stdout_sink is not None and stdout_path is None:
        readers.append(threading.Thread(target=drain_stdout, daemon=True))
    for reader in readers:
        reader.start()
    timer = threading.Timer(timeout_s, lambda: cleanup.stop_process(proc))
    timer.start()
    try:
        if stdin_feed is not None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                stdin_feed(proc.stdin)
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        returncode = proc.wait()
    finally:
        timer.cancel()
        for reader in readers:
            reader.join(timeout=JOIN_TIMEOUT_S)
        for fh in opened:
            fh.close()
        cleanup.done(token)
    elapsed = time.monotonic() - started
    if elapsed >= timeout_s:
        tail.append(f"(stopped after the {timeout_s:.0f} s timeout)")
        returncode = returncode or -1
    return ProcResult(returncode, tail, elapsed)
