"""Redis: BGSAVE, copy the RDB, load it in a fresh server, compare the keyspaces."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsverify import cleanup
from opsverify.dr.errors import DrError
from opsverify.dr.tools import expand, run_tool
from opsverify.services import free_port

# Redis: BGSAVE, copy the RDB, load it in a fresh server, compare


@dataclass(frozen=True)
class RedisKey:
    type: str
    # Milliseconds left, -1 without expiry.
    ttl_ms: int
    value: Any


MARKER_TTL_S = 3600


def seed_redis_markers(client: Any, prefix: str) -> dict[str, str]:
    """One key of every common type (some with TTLs) under `prefix`: what the snapshot must carry."""
    token = os.urandom(4).hex()
    pipe = client.pipeline()
    pipe.set(f"{prefix}string", f"value-{token}")
    pipe.set(f"{prefix}string:ttl", "expiring", ex=MARKER_TTL_S)
    pipe.hset(f"{prefix}hash", mapping={"a": "1", "b": token})
    pipe.rpush(f"{prefix}list", "x", "y", token)
    pipe.sadd(f"{prefix}set", "p", "q", token)
    pipe.zadd(f"{prefix}zset", {"low": 1.5, "high": 99, token: 7})
    pipe.expire(f"{prefix}zset", MARKER_TTL_S)
    pipe.xadd(f"{prefix}stream", {"event": "drill", "token": token})
    for i in range(50):
        pipe.set(f"{prefix}bulk:{i:03d}", f"{i}-{token}")
    pipe.execute()
    return {"token": token}


def read_keyspace(client: Any, prefix: str, limit: int = 20000) -> dict[str, RedisKey]:
    keys: dict[str, RedisKey] = {}
    for raw in client.scan_iter(match=prefix + "*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        ttl = int(client.pttl(key))
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = sorted(client.hgetall(key).items())
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = client.xrange(key)
        else:
            value = client.dump(key)
        keys[key] = RedisKey(kind, ttl, value)
        if len(keys) >= limit:
            break
    return keys


def compare_keyspaces(live: Mapping[str, RedisKey], restored: Mapping[str, RedisKey], *,
                      elapsed_ms: int, limit: int = 20) -> list[str]:
    """Differences in keys, types, TTLs (a restored TTL may only have run down) and values."""
    lines: list[str] = []
    missing = sorted(k for k in live if k not in restored and not (0 <= live[k].ttl_ms <= elapsed_ms))
    if missing:
        shown = ", ".join(missing[:10]) + (f", ... ({len(missing)} in all)" if len(missing) > 10 else "")
        lines.append(f"{len(missing)} of {len(live)} keys missing in the restored RDB: {shown}")
    for key in sorted(set(live) & set(restored)):
        a, b = live[key], restored[key]
        if a.type != b.type:
            lines.append(f"{key}: type {a.type} live, {b.type} restored")
        elif (a.ttl_ms == -1) != (b.ttl_ms == -1) or (a.ttl_ms >= 0 and b.ttl_ms > a.ttl_ms + 1000):
            lines.append(f"{key}: TTL {a.ttl_ms} ms live, {b.ttl_ms} ms restored")
        elif a.value != b.value:
            lines.append(f"{key}: value differs ({str(a.value)[:60]} live, {str(b.value)[:60]} restored)")
    return lines[:limit]


def wait_bgsave(client: Any, since: int, timeout_s: float = 120) -> None:
    """BGSAVE and wait until a save newer than `since` (LASTSAVE) has completed."""
    import redis

    with contextlib.suppress(redis.ResponseError):  # "Background save already in progress"
        client.bgsave()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not info.get("rdb_bgsave_in_progress") and int(info.get("rdb_last_save_time", 0)) > since:
            if info.get("rdb_last_bgsave_status") != "ok":
                raise DrError(f"Redis BGSAVE failed (rdb_last_bgsave_status={info.get('rdb_last_bgsave_status')})")
            return
        if not info.get("rdb_bgsave_in_progress") and int(info.get("rdb_last_save_time", 0)) <= since:
            with contextlib.suppress(redis.ResponseError):
                client.bgsave()
        time.sleep(0.2)
    raise DrError(f"Redis BGSAVE did not complete within {timeout_s:.0f} s")


def copy_rdb(host: str, port: int, password: str, dest: Path, timeout_s: float = 300) -> None:
    """The server's RDB as a replica would receive it (`redis-cli --rdb`): works for local, container and
    remote servers alike, without reaching into their file systems."""
    cli = shutil.which("redis-cli")
    if cli is None:
        raise DrError("redis-cli not found: install redis-tools to copy the RDB")
    env = dict(os.environ)
    if password:
        env["REDISCLI_AUTH"] = password
    result = run_tool([cli, "-h", host, "-p", str(port), "--rdb", str(dest)], env=env, timeout_s=timeout_s)
    if result.returncode != 0 or not dest.is_file():
        raise DrError(f"redis-cli --rdb failed (exit {result.returncode}):\n{result.tail()}")


def _local_rdb_path(client: Any, host: str) -> Path | None:
    """The RDB BGSAVE just wrote, when that file is on this machine (a local server); else None."""
    import redis

    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    try:
        directory = client.config_get("dir").get("dir")
        name = client.config_get("dbfilename").get("dbfilename")
    except redis.RedisError:  # CONFIG disabled (managed Redis)
        return None
    if not directory or not name:
        return None
    path = Path(directory) / name
    try:
        fresh = path.stat().st_mtime >= int(client.lastsave().timestamp()) - 1
    except OSError:  # a container's /data, not ours
        return None
    return path if fresh else None


@contextlib.contextmanager
def fresh_redis(rdb: Path, timeout_s: float = 60) -> Iterator[Any]:
    """A throwaway redis-server on a free loopback port that loads `rdb`; removed afterwards."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise DrError("redis-server not found on this machine: install redis-server to load the RDB")
    with tempfile.TemporaryDirectory(prefix="opsverify-dr-redis-") as tmp:
        shutil.copyfile(rdb, Path(tmp) / "dump.rdb")
        port = free_port()
        logfile = Path(tmp) / "redis.log"
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--dbfilename", "dump.rdb",
             "--save", "", "--appendonly", "no", "--logfile", str(logfile), "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        token = cleanup.register(f"drill redis :{port}", lambda: cleanup.stop_process(proc))
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=2)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    tail = logfile.read_text(errors="replace").strip().splitlines()[-3:] if logfile.exists() else []
                    raise DrError(f"redis-server could not load the RDB (exit {proc.returncode}): {' | '.join(tail)}")
                with contextlib.suppress(redis.RedisError):
                    if client.ping() and not int(client.info("persistence").get("loading", 0)):
                        break
                if time.monotonic() > deadline:
                    raise DrError(f"redis-server did not load the RDB within {timeout_s:.0f} s")
                time.sleep(0.1)
            yield client
        finally:
            client.close()
            cleanup.stop_process(proc)
            cleanup.done(token)


@dataclass(frozen=True)
class RedisDrill:
    live_keys: int
    restored_keys: int
    rdb_bytes: int
    how: str
    elapsed_s: float
    problems: list[str]


def redis_drill(
    host: str, port: int, password: str, prefix: str, workdir: Path, *, command: str | None = None,
    timeout_s: float = 300,
) -> RedisDrill:
    """Marker keys under `prefix`, BGSAVE, copy the RDB, load it in a fresh redis-server, compare.

    With `command` (the team's own Redis backup, {output} {host} {port}), the gate does not BGSAVE
    itself: a script that copies dump.rdb without saving first loses every key written since.
    """
    import redis

    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    rdb = workdir / "drill.rdb"
    client = redis.Redis(host=host, port=port, password=password or None, socket_timeout=10, socket_connect_timeout=5)
    try:
        seed_redis_markers(client, prefix)
        live = read_keyspace(client, prefix)
        read_at = time.monotonic()
        if command:
            line = expand(command, {"output": str(rdb), "host": host, "port": str(port)})
            env = dict(os.environ)
            if password:
                env["REDISCLI_AUTH"] = password
            result = run_tool([line], env=env, timeout_s=timeout_s, shell=True)
            if result.returncode != 0 or not rdb.is_file():
                raise DrError(f"Redis backup command exited with {result.returncode}"
                              f"{'' if rdb.is_file() else f' and wrote no RDB at {rdb}'}:\n{result.tail()}")
            how = "backup.redis_command"
        else:
            since = int(client.lastsave().timestamp())
            time.sleep(1.05)  # LASTSAVE has one-second resolution: the save we wait for must be newer
            wait_bgsave(client, since, timeout_s)
            on_disk = _local_rdb_path(client, host)
            if on_disk is not None:
                shutil.copyfile(on_disk, rdb)
                how = f"BGSAVE + copy of {on_disk}"
            else:
                copy_rdb(host, port, password, rdb, timeout_s)
                how = "BGSAVE + redis-cli --rdb"
        with fresh_redis(rdb) as restored_client:
            restored = read_keyspace(restored_client, prefix)
        elapsed_ms = int((time.monotonic() - read_at) * 1000)
        problems = compare_keyspaces(live, restored, elapsed_ms=elapsed_ms)
        return RedisDrill(len(live), len(restored), rdb.stat().st_size, how, time.monotonic() - started, problems)
    finally:
        with contextlib.suppress(Exception):
            for key in client.scan_iter(match=prefix + "*", count=1000):
                client.delete(key)
        client.close()
        with contextlib.suppress(OSError):
            rdb.unlink()
