"""gRPC adapters of the tasks service: proto <-> domain, nothing else."""

from __future__ import annotations

from kiln.tasks.v1 import tasks_pb2_grpc


class TaskServicer(tasks_pb2_grpc.TaskServiceServicer):
    """TaskService; every RPC answers UNIMPLEMENTED until the tasks issue lands."""


class SystemServicer(tasks_pb2_grpc.SystemServiceServicer):
    """SystemService; every RPC answers UNIMPLEMENTED until the tasks issue lands."""
