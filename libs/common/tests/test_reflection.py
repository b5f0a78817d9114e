"""Reflection serves the Kiln protos with their comments and otherwise as the runtime has them."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2, timestamp_pb2
from google.protobuf.descriptor import FileDescriptor

from kiln.common.reflection import commented_files, with_comments
from kiln.tasks.v1 import tasks_pb2

PROTOS = Path(__file__).parents[3] / "protos"


def served(descriptor: FileDescriptor) -> bytes:
    """A file serialized as grpcio-reflection serves it: from the runtime's descriptor."""
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor.CopyToProto(proto)
    return proto.SerializeToString()


def test_descriptor_set_has_every_proto_with_comments() -> None:
    """Every file under protos/ is in the installed descriptor set with its source info, and
    the leading comment of its first service or message is there word for word."""
    files = commented_files()
    names = sorted(str(path.relative_to(PROTOS)) for path in PROTOS.rglob("*.proto"))
    assert names
    for name in names:
        declarations = files[name].declarations
        comments = [loc.leading_comments for loc in files[name].source_code_info.location]
        first = (
            declarations.service[0].name
            if declarations.service
            else declarations.message_type[0].name
        )
        source = (PROTOS / name).read_text().splitlines()
        at = next(i for i, line in enumerate(source) if line.endswith(f" {first} {{"))
        above = source[at - 1]
        assert above.startswith("//"), f"{name}: {first} has no comment in the proto"
        assert any(above.removeprefix("//") + "\n" in comment for comment in comments), name


def test_served_file_gains_comments_and_nothing_else() -> None:
    """A Kiln file as the runtime serves it comes back with the set's source info, and with
    everything else (field JSON names included) exactly as it was."""
    before = served(tasks_pb2.DESCRIPTOR)
    after = descriptor_pb2.FileDescriptorProto.FromString(with_comments(before, commented_files()))
    assert after.source_code_info == commented_files()["kiln/tasks/v1/tasks.proto"].source_code_info
    after.ClearField("source_code_info")
    assert after == descriptor_pb2.FileDescriptorProto.FromString(before)


def test_file_that_differs_from_the_set_is_served_unchanged() -> None:
    """Comments are located by each declaration's position, so a file the set does not hold,
    or holds in another form, is served as it was."""
    changed = descriptor_pb2.FileDescriptorProto.FromString(served(tasks_pb2.DESCRIPTOR))
    changed.message_type[0].name = "Renamed"
    for serialized in (
        changed.SerializeToString(),
        descriptor_pb2.FileDescriptorProto(name="elsewhere/other.proto").SerializeToString(),
    ):
        assert with_comments(serialized, commented_files()) == serialized
    timestamp = served(timestamp_pb2.DESCRIPTOR)
    unchanged_or_commented = with_comments(timestamp, commented_files())
    parsed = descriptor_pb2.FileDescriptorProto.FromString(unchanged_or_commented)
    parsed.ClearField("source_code_info")
    assert parsed == descriptor_pb2.FileDescriptorProto.FromString(timestamp)
