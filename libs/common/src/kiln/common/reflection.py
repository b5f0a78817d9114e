"""Server reflection that carries the protos' comments, so `grpcurl describe` shows them.

grpcio-reflection answers with the files of a descriptor pool, and those have no comments:
protoc leaves `source_code_info` out of the generated `_pb2` modules, and the upb pool drops it
even when given. `make proto` also writes every proto file with its source info (and the files
they import) to the descriptor set `kiln/descriptors/protos.binpb`; the servicer here lets
grpcio-reflection find the files as before and adds the set's comments to each one it serves.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

DESCRIPTOR_SET_PACKAGE = "kiln.descriptors"
DESCRIPTOR_SET_NAME = "protos.binpb"


@dataclasses.dataclass(frozen=True)
class CommentedFile:
    """One file of the descriptor set: what it declares, and its comments."""

    declarations: descriptor_pb2.FileDescriptorProto
    source_code_info: descriptor_pb2.SourceCodeInfo


@functools.cache
def commented_files() -> Mapping[str, CommentedFile]:
    """Every file of the descriptor set, by its proto path."""
    data = importlib.resources.files(DESCRIPTOR_SET_PACKAGE).joinpath(DESCRIPTOR_SET_NAME)
    files = descriptor_pb2.FileDescriptorSet.FromString(data.read_bytes()).file
    return {file.name: CommentedFile(_declarations(file), file.source_code_info) for file in files}


def _declarations(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """`file` as the generated code describes it: without source info, and without the JSON
    names protoc adds to descriptor sets (served with them, grpcurl would print camelCase)."""
    bare = descriptor_pb2.FileDescriptorProto()
    bare.CopyFrom(file)
    bare.ClearField("source_code_info")
    messages = list(bare.message_type)
    fields = list(bare.extension)
    while messages:
        message = messages.pop()
        messages.extend(message.nested_type)
        fields.extend([*message.field, *message.extension])
    for field in fields:
        field.ClearField("json_name")
    return bare


def with_comments(serialized: bytes, files: Mapping[str, CommentedFile]) -> bytes:
    """A serialized file as grpcio-reflection serves it, with the comments of the set's copy
    when that copy declares exactly the same things; otherwise unchanged, since comments are
    located by the position of each declaration (the set's well-known types, from
    grpcio-tools, need not match the protobuf runtime's)."""
    served = descriptor_pb2.FileDescriptorProto.FromString(serialized)
    commented = files.get(served.name)
    if commented is None or commented.declarations != served:
        return serialized
    served.source_code_info.CopyFrom(commented.source_code_info)
    return served.SerializeToString()


class CommentedReflectionServicer(reflection.aio.ReflectionServicer):
    """grpcio-reflection's servicer, adding the set's comments to each file it serves."""

    def __init__(self, service_names: Iterable[str], files: Mapping[str, CommentedFile]) -> None:
        super().__init__(service_names)
        self._files = files

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        # protobuf's upb pool finds services but not their methods by name, so `grpcurl
        # describe pkg.Service.Method` would be NOT_FOUND: answer with the service's file.
        service_name, _, method = fully_qualified_name.rpartition(".")
        try:
            self._pool.FindFileContainingSymbol(fully_qualified_name)
        except KeyError:
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                service = None
            if service is not None and method in service.methods_by_name:
                return super()._file_containing_symbol(request, service_name)
        return super()._file_containing_symbol(request, fully_qualified_name)

    async def ServerReflectionInfo(
        self,
        request_iterator: AsyncIterator[reflection_pb2.ServerReflectionRequest],
        context: Any,  # grpc.aio.ServicerContext; grpc ships no annotations
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        async for response in super().ServerReflectionInfo(request_iterator, context):
            if response.HasField("file_descriptor_response"):
                serialized_files = response.file_descriptor_response.file_descriptor_proto
                for index, serialized in enumerate(serialized_files):
                    serialized_files[index] = with_comments(serialized, self._files)
            yield response


def enable_commented_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Registers reflection for `service_names` on `server`, with the protos' comments."""
    servicer = CommentedReflectionServicer(service_names, commented_files())
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
