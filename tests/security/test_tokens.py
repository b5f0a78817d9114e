"""Bad access tokens, sent to every service: each kind is refused with UNAUTHENTICATED and
one message that does not say which check failed. (Key rotation, where old and new tokens
verify until the old key is removed, is covered by services/auth/tests/test_keys.py.)"""

from __future__ import annotations

import grpc
import pytest
from security import rpcs
from security.conftest import World

from kiln.auth.v1 import auth_pb2
from kiln.imagegen.v1 import imagegen_pb2
from kiln.tasks.v1 import tasks_pb2

# One protected RPC per process.
PROBES = {
    rpcs.AUTH: ("AuthService.GetCurrentUser", auth_pb2.GetCurrentUserRequest()),
    rpcs.TASKS: ("TaskService.ListTasks", tasks_pb2.ListTasksRequest()),
    rpcs.WORKER: ("ImageGenService.ListModels", imagegen_pb2.ListModelsRequest()),
}


@pytest.mark.parametrize("host", sorted(PROBES))
def test_every_bad_token_kind_is_unauthenticated_alike(world: World, host: str) -> None:
    """Expired, not yet valid, wrong audience or issuer, alg none, HS256 keyed with the
    public key, unknown kid, a foreign key under the real kid, a tampered payload, a missing
    sub and plain garbage: all UNAUTHENTICATED with the same message, while the good token
    they were derived from is accepted."""
    name, request = PROBES[host]
    rpc = rpcs.rpc_named(name)
    channel = world.channels[host]
    assert rpcs.call(channel, rpc, request, world.owner.metadata).code == grpc.StatusCode.OK
    outcomes = {
        kind: rpcs.call(channel, rpc, request, rpcs.bearer(token))
        for kind, token in world.bad_tokens.all().items()
    }
    assert {kind: o.code for kind, o in outcomes.items()} == dict.fromkeys(
        outcomes, grpc.StatusCode.UNAUTHENTICATED
    )
    assert len({o.details for o in outcomes.values()}) == 1, {
        kind: o.details for kind, o in outcomes.items()
    }


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "bearer", "Bearer a b c"],
)
def test_malformed_authorization_header_is_unauthenticated(world: World, header: str) -> None:
    """An authorization header that is not `Bearer <token>` never gets past the check."""
    rpc = rpcs.rpc_named("TaskService.ListTasks")
    outcome = rpcs.call(
        world.channels[rpcs.TASKS], rpc, tasks_pb2.ListTasksRequest(), (("authorization", header),)
    )
    assert outcome.code == grpc.StatusCode.UNAUTHENTICATED, outcome
