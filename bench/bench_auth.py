"""Login latency and the cost of token verification, against a real auth server.

    python bench/bench_auth.py [--runs 5] [--calls 20]

Starts a private PostgreSQL (or uses DATABASE_URL's server), migrates a fresh database and
runs the auth service in this process on uvloop, with the production argon2id parameters
(19 MiB, t=2, p=1). Client and server share one process and event loop, as in the tests, so
round trips include both sides. Every figure is the median over `--runs` runs of the median
of `--calls` calls.

Token verification in the interceptor is measured as the difference between GetJwks (a
public RPC that does nothing) called with and without a bearer token: a public method still
verifies a token it is given, so the difference is the interceptor's check (a run with an
equally long header that is not a token separates the cost of sending the header).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc

from auth import app
from auth.testing import make_config, start_server, stop_server
from kiln.auth.v1 import auth_pb2
from kiln.common import logging, runner, verifiers
from kiln.common.testing import ExternalPostgres, PostgresServer
from kiln.common.tokens import StaticKeySource

PRODUCTION = {
    "AUTH_ARGON2_MEMORY_KIB": "19456",
    "AUTH_ARGON2_TIME_COST": "2",
    "AUTH_ARGON2_PARALLELISM": "1",
    "AUTH_LOGIN_MAX_FAILURES_PER_ACCOUNT": "1000000",
    "AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000",
}


async def median_ms(call: Callable[[], Awaitable[object]], runs: int, calls: int) -> float:
    """Median over runs of the median latency of `calls` sequential calls, in ms."""
    await call()  # warm-up
    per_run = []
    for _ in range(runs):
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - started)
        per_run.append(statistics.median(samples))
    return statistics.median(per_run) * 1000


async def throughput(call: Callable[[], Awaitable[object]], concurrency: int, total: int) -> float:
    """Calls per second with `concurrency` callers making `total` calls in all."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


async def failing(call: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    """`call`, which must fail with UNAUTHENTICATED, as a call that returns normally."""

    async def run() -> None:
        try:
            await call()
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise
        else:
            raise AssertionError("expected UNAUTHENTICATED")

    return run


async def bench(database_url: str, runs: int, calls: int) -> None:
    cfg = make_config(database_url, **PRODUCTION)
    app.migrate(cfg)
    server = await start_server(cfg)
    try:
        stub = server.stub
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        await server.register(email)
        tokens = (await server.login(email)).tokens
        bearer = (("authorization", f"Bearer {tokens.access_token}"),)
        key = await stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(name="bench"), metadata=bearer)
        key_login = auth_pb2.LoginRequest(api_key=auth_pb2.ApiKeyCredential(api_key=key.secret))
        jwks = auth_pb2.GetJwksRequest()
        me = auth_pb2.GetCurrentUserRequest()
        nobody = "nobody@example.com"
        padding = (("x-padding", f"Bearer {tokens.access_token}"),)

        rows = [
            ("Login, password (argon2id verify + refresh token)",
             await median_ms(lambda: server.login(email), runs, calls)),
            ("Login, wrong password",
             await median_ms(await failing(lambda: server.login(email, "wrong" * 4)), runs, calls)),
            ("Login, unknown email (dummy hash)",
             await median_ms(await failing(lambda: server.login(nobody)), runs, calls)),
            ("Login, API key",
             await median_ms(lambda: stub.Login(key_login), runs, calls)),
            ("GetJwks, no token (public, no work)",
             await median_ms(lambda: stub.GetJwks(jwks), runs, calls * 10)),
            ("GetJwks, same-size header that is not a token",
             await median_ms(lambda: stub.GetJwks(jwks, metadata=padding), runs, calls * 10)),
            ("GetJwks, with a bearer token (verified)",
             await median_ms(lambda: stub.GetJwks(jwks, metadata=bearer), runs, calls * 10)),
            ("GetCurrentUser (token + one SELECT)",
             await median_ms(lambda: stub.GetCurrentUser(me, metadata=bearer), runs, calls * 10)),
        ]  # fmt: skip
        print(f"auth service in-process on uvloop, PostgreSQL, cpus={os.cpu_count()}")
        print(f"median of {runs} runs x {calls} calls (x10 for the cheap RPCs)\n")
        print(f"{'what':<52} {'ms':>8}")
        for name, value in rows:
            print(f"{name:<52} {value:>8.2f}")
        print(f"{'=> token check in the interceptor (vs. same header)':<52} "
              f"{rows[6][1] - rows[5][1]:>8.3f}")  # fmt: skip
        print(f"{'=> token header + check (vs. no header)':<52} {rows[6][1] - rows[4][1]:>8.3f}")

        per_second = await throughput(lambda: server.login(email), concurrency=8, total=80)
        print(f"\n{'password logins/s, 8 concurrent callers':<52} {per_second:>8.1f}")

        ring = server.app.ring
        # No cache: this measures the full check of a token not seen before.
        verifier = verifiers.build_verifier(StaticKeySource(ring.public_keys), cfg, cache_size=0)
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            for _ in range(2000):
                await verifier.verify(tokens.access_token)
            samples.append((time.perf_counter() - started) / 2000)
        print(f"{'TokenVerifier.verify alone (us)':<52} {statistics.median(samples) * 1e6:>8.1f}")
    finally:
        await stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    logging.configure_logging("auth", "warning", "console")
    name = f"bench_auth_{uuid.uuid4().hex[:8]}"
    external = os.environ.get("DATABASE_URL")
    postgres: PostgresServer | ExternalPostgres = (
        ExternalPostgres(external) if external else PostgresServer().start()
    )
    try:
        url = postgres.create_database(name)
        runner.run(bench(url, args.runs, args.calls))
        postgres.drop_database(name)
    finally:
        if isinstance(postgres, PostgresServer):
            postgres.close()


if __name__ == "__main__":
    main()
