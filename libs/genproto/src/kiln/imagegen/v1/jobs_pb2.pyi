import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kiln.imagegen.v1 import imagegen_pb2 as _imagegen_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubtaskEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBTASK_EVENT_KIND_UNSPECIFIED: _ClassVar[SubtaskEventKind]
    SUBTASK_EVENT_KIND_STARTED: _ClassVar[SubtaskEventKind]
    SUBTASK_EVENT_KIND_PROGRESS: _ClassVar[SubtaskEventKind]
    SUBTASK_EVENT_KIND_SUCCEEDED: _ClassVar[SubtaskEventKind]
    SUBTASK_EVENT_KIND_FAILED: _ClassVar[SubtaskEventKind]
    SUBTASK_EVENT_KIND_CANCELLED: _ClassVar[SubtaskEventKind]

class JobErrorType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_ERROR_TYPE_UNSPECIFIED: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_RENDER_FAILED: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_PROVIDER_TIMEOUT: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_PROVIDER_UNAVAILABLE: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_RATE_LIMITED: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_INVALID_PROMPT: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_UNSUPPORTED_SIZE: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_PROVIDER_REJECTED: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_TIME_LIMIT: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_EXPIRED: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_MALFORMED_JOB: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_STORAGE_UNAVAILABLE: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_WORKER_ERROR: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_CANCELLED: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_TIMEOUT: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_MAX_DELIVERIES: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_UNPUBLISHABLE: _ClassVar[JobErrorType]
    JOB_ERROR_TYPE_FAILED: _ClassVar[JobErrorType]
SUBTASK_EVENT_KIND_UNSPECIFIED: SubtaskEventKind
SUBTASK_EVENT_KIND_STARTED: SubtaskEventKind
SUBTASK_EVENT_KIND_PROGRESS: SubtaskEventKind
SUBTASK_EVENT_KIND_SUCCEEDED: SubtaskEventKind
SUBTASK_EVENT_KIND_FAILED: SubtaskEventKind
SUBTASK_EVENT_KIND_CANCELLED: SubtaskEventKind
JOB_ERROR_TYPE_UNSPECIFIED: JobErrorType
JOB_ERROR_TYPE_RENDER_FAILED: JobErrorType
JOB_ERROR_TYPE_PROVIDER_TIMEOUT: JobErrorType
JOB_ERROR_TYPE_PROVIDER_UNAVAILABLE: JobErrorType
JOB_ERROR_TYPE_RATE_LIMITED: JobErrorType
JOB_ERROR_TYPE_INVALID_PROMPT: JobErrorType
JOB_ERROR_TYPE_UNSUPPORTED_SIZE: JobErrorType
JOB_ERROR_TYPE_PROVIDER_REJECTED: JobErrorType
JOB_ERROR_TYPE_TIME_LIMIT: JobErrorType
JOB_ERROR_TYPE_EXPIRED: JobErrorType
JOB_ERROR_TYPE_MALFORMED_JOB: JobErrorType
JOB_ERROR_TYPE_STORAGE_UNAVAILABLE: JobErrorType
JOB_ERROR_TYPE_WORKER_ERROR: JobErrorType
JOB_ERROR_TYPE_CANCELLED: JobErrorType
JOB_ERROR_TYPE_TIMEOUT: JobErrorType
JOB_ERROR_TYPE_MAX_DELIVERIES: JobErrorType
JOB_ERROR_TYPE_UNPUBLISHABLE: JobErrorType
JOB_ERROR_TYPE_FAILED: JobErrorType

class Job(_message.Message):
    __slots__ = ("subtask_id", "task_id", "owner_id", "queue", "attempt", "prompt", "negative_prompt", "width", "height", "seed", "use_polish", "format", "create_time", "generation", "index", "ratio", "reuse_results", "share_results")
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    USE_POLISH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    REUSE_RESULTS_FIELD_NUMBER: _ClassVar[int]
    SHARE_RESULTS_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    task_id: str
    owner_id: str
    queue: str
    attempt: int
    prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int
    use_polish: bool
    format: _imagegen_pb2.ImageFormat
    create_time: _timestamp_pb2.Timestamp
    generation: int
    index: int
    ratio: str
    reuse_results: bool
    share_results: bool
    def __init__(self, subtask_id: _Optional[str] = ..., task_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., queue: _Optional[str] = ..., attempt: _Optional[int] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., seed: _Optional[int] = ..., use_polish: _Optional[bool] = ..., format: _Optional[_Union[_imagegen_pb2.ImageFormat, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., generation: _Optional[int] = ..., index: _Optional[int] = ..., ratio: _Optional[str] = ..., reuse_results: _Optional[bool] = ..., share_results: _Optional[bool] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("type", "message", "retryable")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    retryable: bool
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("object_name", "thumbnail_object_name", "content_type", "size_bytes", "sha256", "width", "height", "polished_prompt", "polish_duration", "render_duration", "store_duration", "model", "reused_from_subtask_id")
    OBJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_OBJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    POLISHED_PROMPT_FIELD_NUMBER: _ClassVar[int]
    POLISH_DURATION_FIELD_NUMBER: _ClassVar[int]
    RENDER_DURATION_FIELD_NUMBER: _ClassVar[int]
    STORE_DURATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REUSED_FROM_SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    object_name: str
    thumbnail_object_name: str
    content_type: str
    size_bytes: int
    sha256: str
    width: int
    height: int
    polished_prompt: str
    polish_duration: _duration_pb2.Duration
    render_duration: _duration_pb2.Duration
    store_duration: _duration_pb2.Duration
    model: str
    reused_from_subtask_id: str
    def __init__(self, object_name: _Optional[str] = ..., thumbnail_object_name: _Optional[str] = ..., content_type: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., polished_prompt: _Optional[str] = ..., polish_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., render_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., store_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., model: _Optional[str] = ..., reused_from_subtask_id: _Optional[str] = ...) -> None: ...

class SubtaskEvent(_message.Message):
    __slots__ = ("event_id", "subtask_id", "task_id", "attempt", "sequence", "kind", "worker_id", "time", "step", "total_steps", "result", "error", "will_retry", "delivery")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WILL_RETRY_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    subtask_id: str
    task_id: str
    attempt: int
    sequence: int
    kind: SubtaskEventKind
    worker_id: str
    time: _timestamp_pb2.Timestamp
    step: int
    total_steps: int
    result: JobResult
    error: JobError
    will_retry: bool
    delivery: int
    def __init__(self, event_id: _Optional[str] = ..., subtask_id: _Optional[str] = ..., task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., sequence: _Optional[int] = ..., kind: _Optional[_Union[SubtaskEventKind, str]] = ..., worker_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., result: _Optional[_Union[JobResult, _Mapping]] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., will_retry: _Optional[bool] = ..., delivery: _Optional[int] = ...) -> None: ...

class WorkerHeartbeat(_message.Message):
    __slots__ = ("worker_id", "queues", "concurrency", "in_flight", "processed", "failed", "version", "start_time", "time", "hostname")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    concurrency: int
    in_flight: int
    processed: int
    failed: int
    version: str
    start_time: _timestamp_pb2.Timestamp
    time: _timestamp_pb2.Timestamp
    hostname: str
    def __init__(self, worker_id: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., concurrency: _Optional[int] = ..., in_flight: _Optional[int] = ..., processed: _Optional[int] = ..., failed: _Optional[int] = ..., version: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hostname: _Optional[str] = ...) -> None: ...
