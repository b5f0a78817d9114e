"""The authorization matrix: every RPC of every service, called as every kind of principal,
must end with the code the table below says. The table is the specification; an RPC found
in the descriptors without a row fails, so a new RPC cannot slip in unreviewed.

Principals: anonymous (no token), the owner of the resources the request names, another
user, the admin, a deactivated user (deactivated by the admin after signing in, calling with
the access token they held before), and each bad token kind of `badtokens.BadTokens`.

Two rules shape the table:
- Public RPCs (health, reflection, Register, Login, RefreshToken, GetJwks) ignore a bad
  bearer token and run anonymously; every other RPC answers UNAUTHENTICATED to it.
- A deactivated user's access token is refused everywhere within seconds (UNAUTHENTICATED):
  auth publishes the change to the auth_accounts bucket and every service checks tokens
  against its in-memory copy (kiln.common.account_states). RefreshToken and Login stop
  working at once (see test_deactivated_user_*).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from security import rpcs
from security.conftest import Person, World

from kiln.auth.v1 import auth_pb2
from kiln.imagegen.v1 import imagegen_pb2
from kiln.tasks.v1 import tasks_pb2

OK = grpc.StatusCode.OK
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED

PRINCIPALS = ("anonymous", "owner", "other", "admin", "deactivated", "bad_token")
PUBLIC = (OK, OK, OK, OK, OK, OK)
ANY_USER = (UNAUTH, OK, OK, OK, UNAUTH, UNAUTH)
OWNED = (UNAUTH, OK, NOT_FOUND, OK, UNAUTH, UNAUTH)
ADMIN_ONLY = (UNAUTH, DENIED, DENIED, OK, UNAUTH, UNAUTH)

# RPC -> expected code per principal, in the order of PRINCIPALS.
MATRIX: dict[str, tuple[grpc.StatusCode, ...]] = {
    "Health.Check": PUBLIC,
    "Health.Watch": PUBLIC,
    "Health.List": (UNIMPLEMENTED,) * 6,  # grpcio-health-checking's servicer has no List
    "ServerReflection.ServerReflectionInfo": PUBLIC,
    "AuthService.Register": PUBLIC,
    "AuthService.Login": PUBLIC,
    "AuthService.RefreshToken": PUBLIC,
    "AuthService.GetJwks": PUBLIC,
    "AuthService.Logout": ANY_USER,  # someone else's refresh token is left alone, silently
    "AuthService.GetCurrentUser": ANY_USER,
    "AuthService.ChangePassword": ANY_USER,
    "AuthService.CreateApiKey": ANY_USER,
    "AuthService.ListApiKeys": ANY_USER,  # each user sees their own; the admin all
    "AuthService.RevokeApiKey": OWNED,
    "AuthService.ListUsers": ADMIN_ONLY,
    "AuthService.GetUser": ADMIN_ONLY,
    "AuthService.UpdateUser": ADMIN_ONLY,
    "AuthService.CreateUser": ADMIN_ONLY,
    "TaskService.CreateTask": ANY_USER,
    "TaskService.GetTask": OWNED,
    "TaskService.ListTasks": ANY_USER,  # each user sees their own; the admin all
    "TaskService.ListSubtasks": OWNED,
    "TaskService.GetTaskGrid": OWNED,
    "TaskService.CancelTask": OWNED,
    "TaskService.DeleteTask": OWNED,
    "TaskService.RetryTask": OWNED,
    "TaskService.WatchTask": OWNED,
    "TaskService.GetImage": OWNED,
    "TaskService.PauseTask": OWNED,
    "TaskService.ResumeTask": OWNED,
    "TaskService.UpdateTask": OWNED,
    "SystemService.GetSystemStats": ADMIN_ONLY,
    "SystemService.GetQueueStats": ADMIN_ONLY,
    "SystemService.ListWorkers": ADMIN_ONLY,
    "SystemService.PauseQueue": ADMIN_ONLY,
    "SystemService.ResumeQueue": ADMIN_ONLY,
    "ImageGenService.Generate": ANY_USER,
    "ImageGenService.ListModels": ANY_USER,
}

# Requests naming a resource: the field holding its id. "another user" must get exactly
# what an id that names nothing gets.
RESOURCE_FIELD = {
    "AuthService.RevokeApiKey": "id",
    "TaskService.GetTask": "task_id",
    "TaskService.ListSubtasks": "task_id",
    "TaskService.GetTaskGrid": "task_id",
    "TaskService.CancelTask": "task_id",
    "TaskService.DeleteTask": "task_id",
    "TaskService.RetryTask": "task_id",
    "TaskService.WatchTask": "task_id",
    "TaskService.GetImage": "subtask_id",
    "TaskService.PauseTask": "task_id",
    "TaskService.ResumeTask": "task_id",
    "TaskService.UpdateTask": "task.id",
}

Builder = Callable[[World, Person | None], message.Message]


def _refresh_token(world: World, _caller: Person | None) -> str:
    return world.sign_in(world.owner.email, world.owner.password).refresh_token


def _api_key(world: World) -> str:
    created = world.auth.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(name="matrix"), metadata=world.owner.metadata, timeout=20
    )
    return str(created.api_key.id)


_shared: dict[str, str] = {}


def _watched_task(world: World) -> str:
    """A terminal task of the owner (cancelled), so a watch ends by itself."""
    if "task" not in _shared or _shared.get("stack") != world.stack.tasks.target:
        _shared["task"] = world.cancelled_task(world.owner).id
        _shared["stack"] = world.stack.tasks.target
    return _shared["task"]


def _image_subtask(world: World) -> str:
    key = f"subtask@{world.stack.tasks.target}"
    if key not in _shared:
        _shared[key] = world.finished_subtask(world.owner).id
    return _shared[key]


REQUESTS: dict[str, Builder] = {
    "Health.Check": lambda w, c: health_pb2.HealthCheckRequest(),
    "Health.Watch": lambda w, c: health_pb2.HealthCheckRequest(),
    "Health.List": lambda w, c: health_pb2.HealthListRequest(),
    "ServerReflection.ServerReflectionInfo": lambda w, c: reflection_pb2.ServerReflectionRequest(
        list_services=""
    ),
    "AuthService.Register": lambda w, c: auth_pb2.RegisterRequest(
        email=f"new-{rpcs.random_id()[:8]}@example.com",
        password="a long enough password",
        display_name="new",
    ),
    "AuthService.Login": lambda w, c: auth_pb2.LoginRequest(
        password=auth_pb2.PasswordCredential(email=w.owner.email, password=w.owner.password)
    ),
    "AuthService.RefreshToken": lambda w, c: auth_pb2.RefreshTokenRequest(
        refresh_token=_refresh_token(w, c)
    ),
    "AuthService.GetJwks": lambda w, c: auth_pb2.GetJwksRequest(),
    "AuthService.Logout": lambda w, c: auth_pb2.LogoutRequest(refresh_token=_refresh_token(w, c)),
    "AuthService.GetCurrentUser": lambda w, c: auth_pb2.GetCurrentUserRequest(),
    # Each caller "changes" their own password to itself, so later sign-ins still work.
    "AuthService.ChangePassword": lambda w, c: auth_pb2.ChangePasswordRequest(
        old_password=(c or w.owner).password, new_password=(c or w.owner).password
    ),
    "AuthService.CreateApiKey": lambda w, c: auth_pb2.CreateApiKeyRequest(name="matrix"),
    "AuthService.ListApiKeys": lambda w, c: auth_pb2.ListApiKeysRequest(),
    "AuthService.RevokeApiKey": lambda w, c: auth_pb2.RevokeApiKeyRequest(id=_api_key(w)),
    "AuthService.ListUsers": lambda w, c: auth_pb2.ListUsersRequest(),
    "AuthService.GetUser": lambda w, c: auth_pb2.GetUserRequest(id=w.owner.user_id),
    "AuthService.UpdateUser": lambda w, c: auth_pb2.UpdateUserRequest(
        user=auth_pb2.User(id=w.owner.user_id, display_name="renamed by matrix"),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
    ),
    "AuthService.CreateUser": lambda w, c: auth_pb2.CreateUserRequest(
        email=f"made-{rpcs.random_id()[:8]}@example.com",
        password="a long enough password",
        display_name="made by matrix",
    ),
    "TaskService.CreateTask": lambda w, c: tasks_pb2.CreateTaskRequest(
        task_name="matrix",
        prompt_template="a cube",
        settings=tasks_pb2.TaskSettings(queue=tasks_pb2.QUEUE_LUMINA),
    ),
    "TaskService.GetTask": lambda w, c: tasks_pb2.GetTaskRequest(task_id=_watched_task(w)),
    "TaskService.ListTasks": lambda w, c: tasks_pb2.ListTasksRequest(),
    "TaskService.ListSubtasks": lambda w, c: tasks_pb2.ListSubtasksRequest(
        task_id=_watched_task(w)
    ),
    "TaskService.GetTaskGrid": lambda w, c: tasks_pb2.GetTaskGridRequest(task_id=_watched_task(w)),
    "TaskService.CancelTask": lambda w, c: tasks_pb2.CancelTaskRequest(
        task_id=w.create_task(w.owner).id
    ),
    "TaskService.DeleteTask": lambda w, c: tasks_pb2.DeleteTaskRequest(
        task_id=w.create_task(w.owner).id
    ),
    "TaskService.RetryTask": lambda w, c: tasks_pb2.RetryTaskRequest(
        task_id=w.cancelled_task(w.owner).id
    ),
    "TaskService.WatchTask": lambda w, c: tasks_pb2.WatchTaskRequest(task_id=_watched_task(w)),
    "TaskService.GetImage": lambda w, c: tasks_pb2.GetImageRequest(subtask_id=_image_subtask(w)),
    "TaskService.PauseTask": lambda w, c: tasks_pb2.PauseTaskRequest(
        task_id=w.create_task(w.owner).id
    ),
    "TaskService.ResumeTask": lambda w, c: tasks_pb2.ResumeTaskRequest(
        task_id=w.create_task(w.owner).id
    ),
    "TaskService.UpdateTask": lambda w, c: tasks_pb2.UpdateTaskRequest(
        task=tasks_pb2.Task(id=w.create_task(w.owner).id, priority=7),
        update_mask=field_mask_pb2.FieldMask(paths=["priority"]),
    ),
    "SystemService.GetSystemStats": lambda w, c: tasks_pb2.GetSystemStatsRequest(),
    "SystemService.GetQueueStats": lambda w, c: tasks_pb2.GetQueueStatsRequest(),
    "SystemService.ListWorkers": lambda w, c: tasks_pb2.ListWorkersRequest(),
    "SystemService.PauseQueue": lambda w, c: tasks_pb2.PauseQueueRequest(
        queue=tasks_pb2.QUEUE_LUMINA
    ),
    "SystemService.ResumeQueue": lambda w, c: tasks_pb2.ResumeQueueRequest(
        queue=tasks_pb2.QUEUE_LUMINA
    ),
    "ImageGenService.Generate": lambda w, c: imagegen_pb2.GenerateRequest(
        prompt="a red cube", ratio="1:1", seed=1, format=imagegen_pb2.IMAGE_FORMAT_JPEG
    ),
    "ImageGenService.ListModels": lambda w, c: imagegen_pb2.ListModelsRequest(),
}


def callers(world: World) -> list[tuple[str, str, Person | None, str | None]]:
    """(column, label, person, token) for every principal, one row per bad token kind."""
    people = [
        ("anonymous", "anonymous", None, None),
        ("owner", "owner", world.owner, world.owner.token),
        ("other", "other", world.other, world.other.token),
        ("admin", "admin", world.admin, world.admin.token),
        ("deactivated", "deactivated", world.deactivated, world.deactivated.token),
    ]
    bad = [
        ("bad_token", f"bad_token:{kind}", None, token)
        for kind, token in world.bad_tokens.all().items()
    ]
    return [*people, *bad]


def normalised(outcome: rpcs.Outcome, resource_id: str) -> tuple[Any, ...]:
    """Code, message and error details with the id and the per-call request id blanked."""
    status = outcome.status()
    details = []
    if status is not None:
        for any_detail in status.details:
            details.append(
                any_detail.value.replace(resource_id.encode(), b"<id>")
                if b"request_id" not in any_detail.value
                else any_detail.type_url
            )
    return outcome.code, outcome.details.replace(resource_id, "<id>"), details


def test_every_rpc_has_a_row_and_every_row_an_rpc() -> None:
    """The table and the request builders cover exactly the RPCs the descriptors define."""
    names = {rpc.name for rpc in rpcs.all_rpcs()}
    assert set(MATRIX) == names, (names - set(MATRIX), set(MATRIX) - names)
    assert set(REQUESTS) == names


@pytest.mark.timeout(300)
@pytest.mark.parametrize("rpc", rpcs.all_rpcs(), ids=lambda rpc: rpc.name)
def test_rpc_answers_each_principal_as_the_table_says(world: World, rpc: rpcs.Rpc) -> None:
    """Each principal (and each bad token kind) gets the table's code from every process
    serving the RPC; for a resource-naming RPC, another user's NOT_FOUND is identical in
    code, message and details to that of an id that names nothing."""
    assert rpc.name in MATRIX, f"{rpc.name} has no row in MATRIX: decide who may call it"
    expected = dict(zip(PRINCIPALS, MATRIX[rpc.name], strict=True))
    wrong = []
    for host in rpc.hosts:
        channel = world.channels[host]
        for column, label, person, token in callers(world):
            request = REQUESTS[rpc.name](world, person)
            outcome = rpcs.call(channel, rpc, request, rpcs.bearer(token), max_responses=1)
            if outcome.code != expected[column]:
                wrong.append(
                    f"{host} {label}: {outcome.code.name} ({outcome.details!r}), "
                    f"expected {expected[column].name}"
                )
            if column == "other" and rpc.name in RESOURCE_FIELD:
                *parents, field = RESOURCE_FIELD[rpc.name].split(".")
                holder = request
                for parent in parents:
                    holder = getattr(holder, parent)
                theirs = getattr(holder, field)
                missing = rpcs.random_id()
                setattr(holder, field, missing)
                nothing = rpcs.call(channel, rpc, request, rpcs.bearer(token))
                assert normalised(outcome, theirs) == normalised(nothing, missing), rpc.name
    assert not wrong, "\n".join(wrong)


def test_deactivated_user_loses_access_everywhere_at_once(world: World) -> None:
    """A deactivated user's access token, still unexpired, is refused by the tasks service
    (the world fixture waited only for that to start); signing in again and refreshing fail
    with the same UNAUTHENTICATED a wrong password gets."""
    gone = world.deactivated
    listed = rpcs.call(
        world.channels[rpcs.TASKS],
        rpcs.rpc_named("TaskService.ListTasks"),
        tasks_pb2.ListTasksRequest(),
        rpcs.bearer(gone.token),
    )
    assert listed.code == UNAUTH
    login = rpcs.call(
        world.channels[rpcs.AUTH],
        rpcs.rpc_named("AuthService.Login"),
        auth_pb2.LoginRequest(
            password=auth_pb2.PasswordCredential(email=gone.email, password=gone.password)
        ),
    )
    assert (login.code, login.details) == (UNAUTH, "the email or password is wrong")
    refresh = rpcs.call(
        world.channels[rpcs.AUTH],
        rpcs.rpc_named("AuthService.RefreshToken"),
        auth_pb2.RefreshTokenRequest(refresh_token=gone.refresh_token),
    )
    assert refresh.code == UNAUTH
