"""Password sign-in leaks nothing: an unknown email and a wrong password fail alike (code,
message, details, and time), and repeated failures are throttled."""

from __future__ import annotations

import statistics
import time
import uuid

import grpc
from security import rpcs
from security.conftest import World

from kiln.auth.v1 import auth_pb2

LOGIN = rpcs.rpc_named("AuthService.Login")


def _login(world: World, email: str, password: str) -> tuple[rpcs.Outcome, float]:
    request = auth_pb2.LoginRequest(
        password=auth_pb2.PasswordCredential(email=email, password=password)
    )
    started = time.perf_counter()
    outcome = rpcs.call(world.channels[rpcs.AUTH], LOGIN, request)
    return outcome, time.perf_counter() - started


def _shape(outcome: rpcs.Outcome) -> tuple[object, ...]:
    """Everything a caller sees, minus the per-call request id."""
    status = outcome.status()
    assert status is not None
    details = [d for d in status.details if b"request_id" not in d.value]
    kinds = sorted(d.type_url for d in status.details)
    return outcome.code, outcome.details, status.message, details, kinds


def test_unknown_email_and_wrong_password_look_the_same(world: World) -> None:
    """Ten unknown emails and ten wrong passwords (each on its own account, so no lockout
    interferes), interleaved: same code, message and details, and median latencies within
    a generous bound of each other (an unknown email is checked against a dummy hash)."""
    people = [world.register("victim") for _ in range(10)]
    unknown_times, wrong_times = [], []
    shapes = set()
    for person in people:
        unknown, took = _login(world, f"nobody-{uuid.uuid4().hex[:8]}@example.com", "whatever 123")
        unknown_times.append(took)
        wrong, took = _login(world, person.email, "not the password")
        wrong_times.append(took)
        assert unknown.code == wrong.code == grpc.StatusCode.UNAUTHENTICATED
        shapes.add(repr(_shape(unknown)))
        shapes.add(repr(_shape(wrong)))
    assert len(shapes) == 1, shapes
    a, b = statistics.median(unknown_times), statistics.median(wrong_times)
    print(f"login medians: unknown email {a * 1000:.1f} ms, wrong password {b * 1000:.1f} ms")
    assert abs(a - b) <= max(0.5 * max(a, b), 0.025), (unknown_times, wrong_times)


def test_repeated_failures_are_throttled_for_known_and_unknown_accounts(world: World) -> None:
    """After five failures an account is locked: the sixth attempt is RESOURCE_EXHAUSTED
    with a retry delay, even with the right password. An email nobody registered locks the
    same way, so the lock does not tell whether an account exists."""
    person = world.register("throttled")
    ghost = f"ghost-{uuid.uuid4().hex[:8]}@example.com"
    for email in (person.email, ghost):
        for _ in range(5):
            outcome, _ = _login(world, email, "not the password")
            assert outcome.code == grpc.StatusCode.UNAUTHENTICATED
        locked, _ = _login(world, email, person.password)
        assert locked.code == grpc.StatusCode.RESOURCE_EXHAUSTED, locked
        status = locked.status()
        assert status is not None
        assert any(d.type_url.endswith("google.rpc.RetryInfo") for d in status.details)
