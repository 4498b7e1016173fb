#!/usr/bin/env python3
"""Figures for the spine: cold start, state-proposal round trip (unary, and over the
ProposeStates stream the SDK uses), SyncRuns ingest.

    python bench/spine.py [--only coldstart,roundtrip,ingest,floor] [--backends sqlite,postgres,postgres-split]

Each figure is measured against a real `weir server start` subprocess over
loopback gRPC; nothing here is a test (no asserts on time). Prints a table and
one `RESULT {json}` line. With a Postgres round trip (or ``--only floor``) it first
measures the machine's floor: the same message sizes over a bare grpc.aio stream, and
a bare one-row commit on the same Postgres (see :func:`bench_floor`).

``postgres-split`` is the distributed topology instead: `weir service
orchestration` and `weir service events` as two processes on Postgres and a
nats-server of the bench's own, so the events persister does not share the
orchestration service's event loop (round trip and ingest are measured
against the orchestration process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from weir.v1 import common_pb2, orchestration_pb2_grpc
from weir.v1 import orchestration_pb2 as pb
from weir_kit.jetstream import EmbeddedNats, free_port

SERVICES = [
    "weir.v1.OrchestrationService",
    "weir.v1.DeploymentService",
    "weir.v1.WorkerService",
    "weir.v1.BlockService",
    "weir.v1.ConcurrencyService",
    "weir.v1.EventService",
]
POSTGRES_URL = os.environ.get("WEIR_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


class Server:
    """`weir server start` in a subprocess, on free ports."""

    def __init__(self, home: Path, backend: str = "sqlite", schema_prefix: str | None = None) -> None:
        self.home = home
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.env = {**os.environ, "WEIR_HOME": str(home)}
        # An installed Weir runs from its bytecode cache: a session that turns the cache off
        # would have every start compile Weir's modules again (0.15 to 0.3 s of a cold start here).
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.args = [
            sys.executable,
            "-m",
            "weir.cli",
            "server",
            "start",
            "--grpc-port",
            str(self.grpc_port),
            "--http-port",
            str(self.http_port),
        ]
        self.schema_prefix: str | None = None
        if backend == "postgres":
            self.args += ["--database-url", POSTGRES_URL]
            self.schema_prefix = schema_prefix or f"b{uuid.uuid4().hex[:8]}_"
            self.env["WEIR_DATABASE_SCHEMA_PREFIX"] = self.schema_prefix
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> float:
        """Seconds from spawn until every service answers SERVING."""
        t0 = self.spawned = time.perf_counter()
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Poll every few ms: without these, a connect that fails before the server listens
        # puts the channel into gRPC's 1 s reconnect backoff and the figure measures that.
        fast = [
            ("grpc.initial_reconnect_backoff_ms", 5),
            ("grpc.min_reconnect_backoff_ms", 5),
            ("grpc.max_reconnect_backoff_ms", 20),
        ]
        channel = grpc.insecure_channel(self.address, options=fast)
        stub = health_pb2_grpc.HealthStub(channel)
        pending = list(SERVICES)
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited during start")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(service=pending[0]), timeout=0.5).status == 1:
                    pending.pop(0)
                    continue
            except grpc.RpcError:
                pass
            time.sleep(0.002)
        elapsed = time.perf_counter() - t0
        channel.close()
        return elapsed

    def http_ready(self) -> float:
        """Seconds from spawn until the gateway's ``/api/health`` answers 200 (after start())."""
        url = f"http://127.0.0.1:{self.http_port}/api/health"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=0.5) as reply:
                    if reply.status == 200:
                        return time.perf_counter() - self.spawned
            except OSError:
                pass
            time.sleep(0.002)

    def rss_mb(self) -> float:
        assert self.proc is not None
        p = psutil.Process(self.proc.pid)
        return sum(x.memory_info().rss for x in [p, *p.children(recursive=True)]) / 2**20

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        if self.schema_prefix:
            drop_schemas(self.schema_prefix)


class SplitServices:
    """`weir service orchestration` + `weir service events` on Postgres and a nats-server of our own."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.nats = EmbeddedNats(home / "nats")
        self.grpc_port = free_port()
        self.events_port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.schema_prefix = f"b{uuid.uuid4().hex[:8]}_"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        nats_url = self.nats.start()
        env = {**os.environ, "WEIR_HOME": str(self.home), "WEIR_DATABASE_SCHEMA_PREFIX": self.schema_prefix}
        for name, port in (("orchestration", self.grpc_port), ("events", self.events_port)):
            args = [sys.executable, "-m", "weir.cli", "service", name, "--grpc-port", str(port)]
            args += ["--database-url", POSTGRES_URL, "--nats-url", nats_url]
            self.procs.append(subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in (self.grpc_port, self.events_port):
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            grpc.channel_ready_future(channel).result(timeout=60)
            stub = health_pb2_grpc.HealthStub(channel)
            while stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status != 1:
                time.sleep(0.01)
            channel.close()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=20)
        self.nats.stop()
        drop_schemas(self.schema_prefix)


def drop_schemas(prefix: str) -> None:
    """Drop the Postgres schemas a bench server made (one per service), so runs do not pile up."""

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            pattern = prefix.replace("_", r"\_") + "%"
            names = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", pattern)
            for row in names:
                await conn.execute(f'DROP SCHEMA "{row["nspname"]}" CASCADE')
        finally:
            await conn.close()

    _run_async(drop())


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def bench_coldstart(reps: int) -> dict[str, Any]:
    """Spawn to all SERVING on an empty ``WEIR_HOME`` and again on the same home (SQLite).

    One start before the timed ones writes the bytecode cache of an editable
    install, as a wheel's install does; "fresh" is about the home, not the install.
    """
    fresh, existing, rss, fresh_http, existing_http = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="weir-bench-") as warmup:
        s = Server(Path(warmup))
        s.start()
        s.stop()
    for _ in range(reps):
        home = Path(tempfile.mkdtemp(prefix="weir-bench-"))
        try:
            s = Server(home)
            fresh.append(s.start())
            fresh_http.append(s.http_ready())
            time.sleep(0.5)
            rss.append(s.rss_mb())
            s.stop()
            s = Server(home)
            existing.append(s.start())
            existing_http.append(s.http_ready())
            s.stop()
        finally:
            shutil.rmtree(home, ignore_errors=True)
    return {
        "fresh_home_s": statistics.median(fresh),
        "existing_home_s": statistics.median(existing),
        "fresh_home_http_s": statistics.median(fresh_http),
        "existing_home_http_s": statistics.median(existing_http),
        "rss_mb_tree": statistics.median(rss),
        "reps": reps,
    }


def _state(t: int) -> common_pb2.State:
    return common_pb2.State(type=t)


# ------------------------------------------------------------------ the machine's floor


def _identity(data: bytes) -> bytes:
    return data


async def _serve_echo(port: int) -> None:
    """A grpc.aio server whose one stream method sends back each message it reads."""

    async def echo(requests: Any, context: Any) -> Any:
        async for message in requests:
            yield message

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.stream_stream_rpc_method_handler(echo, _identity, _identity)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _echo_round_trips(port: int, runs: int) -> list[float]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    await asyncio.wait_for(channel.channel_ready(), 10)
    call = channel.stream_stream("/bench.Echo/Echo", request_serializer=_identity, response_deserializer=_identity)()
    payload = b"x" * 120  # about a proposal's size
    samples = []
    for i in range(runs + 200):  # the first 200 warm up
        t0 = time.perf_counter()
        await call.write(payload)
        await call.read()
        if i >= 200:
            samples.append((time.perf_counter() - t0) * 1000)
    await call.done_writing()
    await channel.close()
    return samples


async def _postgres_round_trips(runs: int) -> dict[str, list[float]]:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://"))
    schema = f"bench_floor_{uuid.uuid4().hex[:8]}"
    try:
        await conn.execute(f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id text PRIMARY KEY, data text)")
        insert = await conn.prepare(f"INSERT INTO {schema}.t VALUES ($1, $2)")
        out: dict[str, list[float]] = {"select": [], "insert": []}
        for name, call in (
            ("select", lambda: conn.fetchval("SELECT 1")),
            ("insert", lambda: insert.fetch(uuid.uuid4().hex, "x" * 200)),
        ):
            for i in range(runs + 200):
                t0 = time.perf_counter()
                await call()
                if i >= 200:
                    out[name].append((time.perf_counter() - t0) * 1000)
        return out
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


def bench_floor(runs: int) -> dict[str, float]:
    """What this machine spends on a proposal's unavoidable parts, with none of Weir's code: a
    message and its answer on an open grpc.aio stream between two processes, and on Postgres
    a ``SELECT 1`` and a one-row INSERT that commits (waiting for its WAL flush, as a proposal's
    write does). Their sum is the least a durable proposal over gRPC can take here: the VMs this
    runs on differ by 2x in both from one day to the next, so round trips are read against it."""
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve-echo", str(port)])
    try:
        echo = _run_async(_echo_round_trips(port, runs))
    finally:
        server.terminate()
        server.wait(timeout=10)
    pg = _run_async(_postgres_round_trips(runs))
    out = {
        "grpc_stream_echo_p50_ms": pct(echo, 0.5),
        "postgres_select1_p50_ms": pct(pg["select"], 0.5),
        "postgres_insert_commit_p50_ms": pct(pg["insert"], 0.5),
    }
    out["proposal_floor_ms"] = out["grpc_stream_echo_p50_ms"] + out["postgres_insert_commit_p50_ms"]
    return out


def bench_roundtrip(server: Server | SplitServices, runs: int) -> dict[str, object]:
    channel = grpc.insecure_channel(server.address)
    stub = orchestration_pb2_grpc.OrchestrationServiceStub(channel)
    flow = f"bench-rt-{uuid.uuid4().hex[:6]}"
    samples: list[float] = []
    for _ in range(20):  # warm up
        run = stub.CreateFlowRun(pb.CreateFlowRunRequest(flow_name=flow)).flow_run
        stub.SetFlowRunState(pb.SetFlowRunStateRequest(flow_run_id=run.id, proposal=pb.StateProposal(state=_state(3))))
    for _ in range(runs):
        run = stub.CreateFlowRun(pb.CreateFlowRunRequest(flow_name=flow)).flow_run
        for t in (3, 5):  # RUNNING, COMPLETED
            t0 = time.perf_counter()
            res = stub.SetFlowRunState(
                pb.SetFlowRunStateRequest(flow_run_id=run.id, proposal=pb.StateProposal(state=_state(t)))
            )
            samples.append((time.perf_counter() - t0) * 1000)
            assert res.result.decision == pb.ACCEPT, res
    channel.close()
    return {"p50_ms": pct(samples, 0.5), "p99_ms": pct(samples, 0.99), "n": len(samples)}


_LOOP: asyncio.AbstractEventLoop | None = None


def _run_async(coro: Any) -> Any:
    """Run ``coro`` on one event loop kept for the whole bench: grpc.aio's poller outlives a
    loop that ``asyncio.run`` closes, and reports "Event loop is closed" on the next one."""
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    return _LOOP.run_until_complete(coro)


def bench_stream_roundtrip(server: Server | SplitServices, runs: int) -> dict[str, object]:
    """The same proposals as :func:`bench_roundtrip`, over one ``ProposeStates`` stream from a
    ``grpc.aio`` client: the path the SDK takes (``weir.client._proposals``)."""

    async def measure() -> list[float]:
        channel = grpc.aio.insecure_channel(server.address)
        stub = orchestration_pb2_grpc.OrchestrationServiceStub(channel)
        call = stub.ProposeStates()
        flow = f"bench-rts-{uuid.uuid4().hex[:6]}"
        samples: list[float] = []
        tag = 0
        for i in range(runs + 20):  # the first 20 warm up
            run = (await stub.CreateFlowRun(pb.CreateFlowRunRequest(flow_name=flow))).flow_run
            for t in (3, 5):  # RUNNING, COMPLETED
                tag += 1
                request = pb.SetFlowRunStateRequest(flow_run_id=run.id, proposal=pb.StateProposal(state=_state(t)))
                t0 = time.perf_counter()
                await call.write(pb.ProposeStatesRequest(tag=tag, flow_run=request))
                answer = await call.read()
                if i >= 20:
                    samples.append((time.perf_counter() - t0) * 1000)
                assert answer.tag == tag and answer.result.decision == pb.ACCEPT, answer
        await call.done_writing()
        await channel.close()
        return samples

    samples = _run_async(measure())
    return {"p50_ms": pct(samples, 0.5), "p99_ms": pct(samples, 0.99), "n": len(samples)}


def bench_sdk_roundtrip(server: Server | SplitServices, runs: int) -> dict[str, object]:
    """``AsyncWeirClient.set_flow_run_state``: the stream plus the SDK's own conversions."""
    from weir.client import AsyncWeirClient
    from weir.client.types import State, StateType

    async def measure() -> list[float]:
        samples: list[float] = []
        flow = f"bench-rtc-{uuid.uuid4().hex[:6]}"
        async with AsyncWeirClient(server.address) as client:
            for i in range(runs + 20):  # the first 20 warm up
                run = await client.create_flow_run(flow_name=flow)
                for t in (StateType.RUNNING, StateType.COMPLETED):
                    state = State(type=t)
                    t0 = time.perf_counter()
                    result = await client.set_flow_run_state(run.id, state)
                    if i >= 20:
                        samples.append((time.perf_counter() - t0) * 1000)
                    assert result.decision.name == "ACCEPT", result
        return samples

    samples = _run_async(measure())
    return {"p50_ms": pct(samples, 0.5), "p99_ms": pct(samples, 0.99), "n": len(samples)}


def bench_ingest(server: Server | SplitServices, total: int, batch: int) -> dict[str, object]:
    channel = grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 64 << 20)])
    stub = orchestration_pb2_grpc.OrchestrationServiceStub(channel)
    run = stub.CreateFlowRun(pb.CreateFlowRunRequest(flow_name="bench-ingest")).flow_run
    messages = []
    for seq in range(1, total // batch + 1):
        creates = [
            pb.CreateTaskRunRequest(
                id=str(uuid.uuid4()),
                flow_run_id=run.id,
                name=f"t-{seq}-{i}",
                task_key="bench.inc",
                dynamic_key=f"{seq}-{i}",
                state=common_pb2.State(id=str(uuid.uuid4()), type=2),
            )
            for i in range(batch)
        ]
        messages.append(pb.SyncRunsRequest(seq=seq, create_task_runs=creates))
    last = messages[-1].seq
    t0 = time.perf_counter()
    for reply in stub.SyncRuns(iter(messages)):
        if reply.acked_seq >= last:
            break
    elapsed = time.perf_counter() - t0
    seen = stub.ListTaskRuns(
        pb.ListTaskRunsRequest(filter=pb.TaskRunFilter(flow_run_ids=[run.id]), page=common_pb2.PageRequest(page_size=1))
    )
    channel.close()
    return {
        "records": total,
        "batch": batch,
        "seconds": elapsed,
        "records_per_s": total / elapsed,
        "visible_after_ack": bool(seen.task_runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="coldstart,roundtrip,ingest")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--ingest", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)  # bench_floor's server process
    args = parser.parse_args()
    if args.serve_echo:
        asyncio.run(_serve_echo(args.serve_echo))
        return 0
    only = set(args.only.split(","))
    out: dict[str, object] = {}
    if "coldstart" in only:
        cold = out["coldstart"] = bench_coldstart(args.reps)
        print(
            f"cold start to all SERVING: fresh {cold['fresh_home_s']:.3f}s, existing {cold['existing_home_s']:.3f}s, "
            f"RSS {cold['rss_mb_tree']:.0f} MB; to /api/health 200: fresh {cold['fresh_home_http_s']:.3f}s, "
            f"existing {cold['existing_home_http_s']:.3f}s"
        )
    if "floor" in only or ("roundtrip" in only and "postgres" in args.backends):
        floor = out["floor"] = bench_floor(args.runs)
        print(
            f"machine floor: grpc.aio stream echo p50 {floor['grpc_stream_echo_p50_ms']:.3f} ms; Postgres SELECT 1 "
            f"p50 {floor['postgres_select1_p50_ms']:.3f} ms, one-row INSERT with commit p50 "
            f"{floor['postgres_insert_commit_p50_ms']:.3f} ms; a durable proposal over gRPC: >= "
            f"{floor['proposal_floor_ms']:.3f} ms"
        )
    for backend in args.backends.split(","):
        if not ({"roundtrip", "ingest"} & only):
            break
        home = Path(tempfile.mkdtemp(prefix="weir-bench-"))
        server: Server | SplitServices = SplitServices(home) if backend == "postgres-split" else Server(home, backend)
        server.start()
        try:
            if "roundtrip" in only:
                r = bench_roundtrip(server, args.runs)
                out[f"roundtrip_{backend}"] = r
                print(
                    f"[{backend}] state proposal round trip: p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms "
                    f"(n={r['n']})"
                )
                r = bench_stream_roundtrip(server, args.runs)
                out[f"roundtrip_stream_{backend}"] = r
                print(
                    f"[{backend}] state proposal round trip, ProposeStates stream: p50 {r['p50_ms']:.3f} ms, "
                    f"p99 {r['p99_ms']:.3f} ms (n={r['n']})"
                )
                r = bench_sdk_roundtrip(server, args.runs)
                out[f"roundtrip_sdk_{backend}"] = r
                print(
                    f"[{backend}] state proposal, AsyncWeirClient.set_flow_run_state: p50 {r['p50_ms']:.3f} ms, "
                    f"p99 {r['p99_ms']:.3f} ms (n={r['n']})"
                )
            if "ingest" in only:
                r = bench_ingest(server, args.ingest, args.batch)
                out[f"ingest_{backend}"] = r
                print(
                    f"[{backend}] SyncRuns ingest: {r['records_per_s']:.0f} task-run records/s "
                    f"({r['records']} in {r['seconds']:.2f}s, batches of {r['batch']})"
                )
        finally:
            server.stop()
            shutil.rmtree(home, ignore_errors=True)
    print("RESULT " + json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
