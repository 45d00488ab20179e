"""Cache and lock throughput: kaiju's Redis and memory backends beside raw redis-py.

    .venv/bin/python bench/cache_locks.py [--url redis://127.0.0.1:6379/0] [--ops 20000] [--concurrency 32]
    .venv/bin/python bench/cache_locks.py --modes standalone,cluster [--cluster-nodes h:p,h:p,h:p]

Without --url it starts its own redis-server on a free port (kaiju.testing.RedisServer);
mode cluster runs the same bench on a Redis Cluster (three masters started with
kaiju.testing.redis.RedisClusterSet, unless --cluster-nodes names one), raw redis-py's
side being its `RedisCluster` client.
Every figure is measured in this run, with the same number of concurrent workers and the
same pool size for kaiju and for raw redis-py, which issues the very commands kaiju sends
(GET / SET of the same namespaced keys and encoded values; EVALSHA of the same lock
scripts). Each figure is the best of --rounds rounds, rounds interleaved.
kaiju's side sends concurrent commands through its auto-pipeline; raw redis-py sends each
command on its own, as an app using redis-py directly would.
Targets: Redis backends >= 90% of raw redis-py (standalone); memory backends >= 10x the Redis ones.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from kaiju.cache.memory import MemoryCache
from kaiju.cache.redis import RedisCache
from kaiju.locks.memory import MemoryLocks
from kaiju.locks.redis import RedisLocks
from kaiju.lua import LOCK_ACQUIRE as ACQUIRE_SCRIPT
from kaiju.lua import LOCK_RELEASE as RELEASE_SCRIPT
from kaiju.redis import RedisConnection, parse_node
from kaiju.runtime.loop import choose_loop, loop_factory, loop_name
from kaiju.runtime.service import App
from kaiju.testing.redis import RedisClusterSet, RedisServer
from kaiju.testing.services import started

VALUE = {"id": 12345, "name": "some user", "tags": ["a", "b", "c"], "score": 0.75}

Op = Callable[[int, int], Awaitable[object]]  # (worker, i) -> awaitable


async def measure(op: Op, ops: int, concurrency: int) -> float:
    """Operations per second running `op` from `concurrency` workers, `ops` in all."""
    per_worker = ops // concurrency

    async def worker(w: int) -> None:
        for i in range(per_worker):
            await op(w, i)

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return per_worker * concurrency / (time.perf_counter() - start)


def raw_client(settings: dict, concurrency: int) -> aioredis.Redis | RedisCluster:
    """Plain redis-py on the same server(s) with the same pool size."""
    if "cluster_nodes" in settings:
        nodes = [ClusterNode(*parse_node(node)) for node in settings["cluster_nodes"]]
        return RedisCluster(startup_nodes=nodes, max_connections=concurrency)
    return aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(settings["url"], max_connections=concurrency)
    )


async def run(mode: str, settings: dict, ops: int, concurrency: int, rounds: int) -> None:
    app = App(name="bench", env="bench")
    conn = RedisConnection(**settings, max_connections=concurrency)
    rcache, rlocks = RedisCache(), RedisLocks()
    mcache, mlocks = MemoryCache(max_size=0, name="mcache"), MemoryLocks(name="mlocks")
    raw = raw_client(settings, concurrency)
    encoded = msgspec.msgpack.encode(VALUE)
    acquire_sha = await raw.script_load(ACQUIRE_SCRIPT)
    release_sha = await raw.script_load(RELEASE_SCRIPT)
    keys = [f"k{w}.{i % 100}" for w in range(concurrency) for i in range(100)]

    async with started(conn, rcache, rlocks, mcache, mlocks, app=app):
        raw_keys = [rcache.full_key(k) for k in keys]
        raw_lock_keys = [rlocks.full_key(f"l{w}") for w in range(concurrency)]

        def key(w: int, i: int) -> str:
            return keys[w * 100 + i % 100]

        def raw_key(w: int, i: int) -> str:
            return raw_keys[w * 100 + i % 100]

        async def raw_lock_cycle(w: int, i: int) -> None:
            lock_id = f"raw:{w}.{i}"
            k = raw_lock_keys[w]
            await raw.evalsha(acquire_sha, 2, k, rlocks.fence_key, lock_id, 10000)
            await raw.evalsha(release_sha, 1, k, lock_id)

        def lock_cycle(locks) -> Op:
            async def cycle(w: int, i: int) -> None:
                info = await locks.acquire(f"l{w}", 10)
                await locks.release(f"l{w}", info.id)

            return cycle

        cases: list[tuple[str, dict[str, Op]]] = [
            ("cache set", {
                "raw": lambda w, i: raw.set(raw_key(w, i), encoded),
                "redis": lambda w, i: rcache.set(key(w, i), VALUE),
                "memory": lambda w, i: mcache.set(key(w, i), VALUE),
            }),
            ("cache get", {
                "raw": lambda w, i: raw.get(raw_key(w, i)),
                "redis": lambda w, i: rcache.get(key(w, i)),
                "memory": lambda w, i: mcache.get(key(w, i)),
            }),
            ("lock acquire+release", {
                "raw": raw_lock_cycle,
                "redis": lock_cycle(rlocks),
                "memory": lock_cycle(mlocks),
            }),
        ]
        best: dict[tuple[str, str], float] = {}
        for _ in range(rounds):
            for name, variants in cases:
                for variant, op in variants.items():
                    n = ops * 10 if variant == "memory" else ops  # memory is fast: run longer
                    rate = await measure(op, n, concurrency)
                    best[name, variant] = max(best.get((name, variant), 0.0), rate)
        conn_pipelines = (conn.batch.counts["pipelines"], conn.batch.counts["commands"])
    await raw.aclose()

    print(
        f"Redis {mode}: ops: {ops} (memory: {ops * 10}), concurrency: {concurrency}, best of {rounds} rounds, "
        f"ops/s, loop: {loop_name()}"
    )
    header = (
        f"{'operation':<22}{'raw redis-py':>14}{'kaiju redis':>14}{'redis/raw':>11}"
        f"{'kaiju memory':>15}{'memory/redis':>14}"
    )
    print(header)
    print("-" * len(header))
    for name, _ in cases:
        raw_rate, redis_rate, mem_rate = best[name, "raw"], best[name, "redis"], best[name, "memory"]
        print(
            f"{name:<22}{raw_rate:>14,.0f}{redis_rate:>14,.0f}{redis_rate / raw_rate:>10.0%} "
            f"{mem_rate:>14,.0f}{mem_rate / redis_rate:>13.1f}x"
        )
    print(f"pipelines: {conn_pipelines[0]:,} carrying {conn_pipelines[1]:,} commands")
    print("targets: redis/raw >= 90% (standalone), memory/redis >= 10x")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a Redis to use (default: start a redis-server on a free port)")
    parser.add_argument("--cluster-nodes", help="host:port,... of a Redis Cluster (default: start one)")
    parser.add_argument("--modes", default="standalone,cluster", help="standalone, cluster or both (comma-separated)")
    parser.add_argument("--ops", type=int, default=20000, help="operations per Redis measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent workers (and pool size)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best of each figure is kept")
    args = parser.parse_args()
    owned: list = []
    try:
        with asyncio.Runner(loop_factory=loop_factory(choose_loop())) as runner:  # the loop kaiju-run would use
            for mode in args.modes.split(","):
                if mode == "standalone":
                    url = args.url
                    if url is None:
                        server = RedisServer(persistent=False)
                        owned.append(server)
                        server.start()
                        url = server.url
                    settings: dict = {"url": url}
                elif mode == "cluster":
                    if args.cluster_nodes:
                        settings = {"cluster_nodes": args.cluster_nodes.split(",")}
                    else:
                        cluster = RedisClusterSet()
                        owned.append(cluster)
                        cluster.start()
                        settings = cluster.settings
                else:
                    parser.error(f"unknown mode {mode!r}: standalone or cluster")
                runner.run(run(mode, settings, args.ops, args.concurrency, args.rounds))
    finally:
        for servers in owned:
            servers.cleanup()


if __name__ == "__main__":
    main()
