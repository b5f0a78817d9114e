import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from kiln.tasks.v1 import tasks_pb2 as _tasks_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_WEBP: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_WEBP: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "ratio", "seed", "queue", "use_polish", "format", "queue_value")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    USE_POLISH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_VALUE_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    ratio: str
    seed: int
    queue: str
    use_polish: bool
    format: ImageFormat
    queue_value: _tasks_pb2.Queue
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., ratio: _Optional[str] = ..., seed: _Optional[int] = ..., queue: _Optional[str] = ..., use_polish: _Optional[bool] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., queue_value: _Optional[_Union[_tasks_pb2.Queue, str]] = ...) -> None: ...

class GenerateProgress(_message.Message):
    __slots__ = ("step", "total_steps")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ...) -> None: ...

class GeneratedImage(_message.Message):
    __slots__ = ("data", "content_type", "width", "height", "seed", "prompt", "sha256", "render_duration", "model")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    RENDER_DURATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    content_type: str
    width: int
    height: int
    seed: int
    prompt: str
    sha256: str
    render_duration: _duration_pb2.Duration
    model: str
    def __init__(self, data: _Optional[bytes] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., seed: _Optional[int] = ..., prompt: _Optional[str] = ..., sha256: _Optional[str] = ..., render_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("progress", "image")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    progress: GenerateProgress
    image: GeneratedImage
    def __init__(self, progress: _Optional[_Union[GenerateProgress, _Mapping]] = ..., image: _Optional[_Union[GeneratedImage, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("queue", "provider", "model", "ratios", "sizes", "served")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RATIOS_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    SERVED_FIELD_NUMBER: _ClassVar[int]
    queue: str
    provider: str
    model: str
    ratios: _containers.RepeatedScalarFieldContainer[str]
    sizes: _containers.RepeatedScalarFieldContainer[str]
    served: bool
    def __init__(self, queue: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., ratios: _Optional[_Iterable[str]] = ..., sizes: _Optional[_Iterable[str]] = ..., served: _Optional[bool] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "polisher")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    POLISHER_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    polisher: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., polisher: _Optional[str] = ...) -> None: ...
