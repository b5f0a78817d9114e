"""Case 5's floor: a bench-only gRPC server whose GetTask and ListTasks do nothing.

It is built like the tasks service's server (`kiln.common.server.ServiceHost` on uvloop, the
same interceptor chain: request id and access log, token check with the auth service's
published keys and the same verifier, account-state check, text limits), but its handlers
return an empty response at once: no database, no conversion. Its calls/s with the same
load clients is what the machine allows a Kiln read to reach at best.

    python -m bench.benchlib.floor_rpc AUTH_TARGET   # prints its port, serves until killed
"""

from __future__ import annotations

import sys
from typing import Any

import grpc

from kiln.common import interceptors, jwks, logging, runner, server, textlimits
from kiln.common.account_states import AccountStates
from kiln.common.settings import ServerSettings
from kiln.common.tokens import TokenVerifier
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from tasks import validation


class DoNothing(tasks_pb2_grpc.TaskServiceServicer):
    """Answers GetTask and ListTasks with an empty message."""

    async def GetTask(self, request: tasks_pb2.GetTaskRequest, context: Any) -> Any:
        return tasks_pb2.GetTaskResponse()

    async def ListTasks(self, request: tasks_pb2.ListTasksRequest, context: Any) -> Any:
        return tasks_pb2.ListTasksResponse()


async def main(auth_target: str) -> None:
    """Serves until SIGTERM."""
    channel = grpc.aio.insecure_channel(auth_target)
    verifier = TokenVerifier(
        jwks.JwksKeySource(jwks.grpc_jwks_fetcher(channel)), "kiln-auth", "kiln"
    )
    # Not fed from NATS: with no state known its check per call is the same lookup.
    accounts = AccountStates(strict=False)
    settings = ServerSettings(
        grpc_host="127.0.0.1", grpc_port=0, metrics_port=-1, shutdown_delay=0, grace_period=0
    )
    servicer = DoNothing()
    host = server.ServiceHost(
        settings,
        [
            server.GrpcService(
                "kiln.tasks.v1.TaskService",
                lambda s: tasks_pb2_grpc.add_TaskServiceServicer_to_server(servicer, s),
            )
        ],
        interceptors=[
            *interceptors.standard_interceptors(verifier, accounts=accounts),
            textlimits.TextLimitInterceptor(validation.TEXT_LIMITS),
        ],
    )
    port = await host.start()
    host.install_signal_handlers()
    print(port, flush=True)
    await host.wait()
    await channel.close()


if __name__ == "__main__":
    logging.configure_logging("floor", "warning", "console")
    runner.run(main(sys.argv[1]))
