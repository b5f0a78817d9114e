import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_PENDING: _ClassVar[TaskState]
    TASK_STATE_RUNNING: _ClassVar[TaskState]
    TASK_STATE_SUCCEEDED: _ClassVar[TaskState]
    TASK_STATE_PARTIALLY_FAILED: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_CANCELLED: _ClassVar[TaskState]

class SubtaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBTASK_STATE_UNSPECIFIED: _ClassVar[SubtaskState]
    SUBTASK_STATE_PENDING: _ClassVar[SubtaskState]
    SUBTASK_STATE_QUEUED: _ClassVar[SubtaskState]
    SUBTASK_STATE_RUNNING: _ClassVar[SubtaskState]
    SUBTASK_STATE_SUCCEEDED: _ClassVar[SubtaskState]
    SUBTASK_STATE_FAILED: _ClassVar[SubtaskState]
    SUBTASK_STATE_CANCELLED: _ClassVar[SubtaskState]

class Queue(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUEUE_UNSPECIFIED: _ClassVar[Queue]
    QUEUE_STANDARD: _ClassVar[Queue]
    QUEUE_LUMINA: _ClassVar[Queue]
    QUEUE_HIGH_PRIORITY: _ClassVar[Queue]

class OutputFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_FORMAT_UNSPECIFIED: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_PNG: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_WEBP: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_JPEG: _ClassVar[OutputFormat]

class WaitReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WAIT_REASON_UNSPECIFIED: _ClassVar[WaitReason]
    WAIT_REASON_QUEUED: _ClassVar[WaitReason]
    WAIT_REASON_TASK_PAUSED: _ClassVar[WaitReason]
    WAIT_REASON_QUEUE_PAUSED: _ClassVar[WaitReason]
    WAIT_REASON_NO_WORKER: _ClassVar[WaitReason]

class WebhookEvent(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_EVENT_UNSPECIFIED: _ClassVar[WebhookEvent]
    WEBHOOK_EVENT_TASK_FINISHED: _ClassVar[WebhookEvent]
    WEBHOOK_EVENT_SUBTASK_FINISHED: _ClassVar[WebhookEvent]
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_PENDING: TaskState
TASK_STATE_RUNNING: TaskState
TASK_STATE_SUCCEEDED: TaskState
TASK_STATE_PARTIALLY_FAILED: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_CANCELLED: TaskState
SUBTASK_STATE_UNSPECIFIED: SubtaskState
SUBTASK_STATE_PENDING: SubtaskState
SUBTASK_STATE_QUEUED: SubtaskState
SUBTASK_STATE_RUNNING: SubtaskState
SUBTASK_STATE_SUCCEEDED: SubtaskState
SUBTASK_STATE_FAILED: SubtaskState
SUBTASK_STATE_CANCELLED: SubtaskState
QUEUE_UNSPECIFIED: Queue
QUEUE_STANDARD: Queue
QUEUE_LUMINA: Queue
QUEUE_HIGH_PRIORITY: Queue
OUTPUT_FORMAT_UNSPECIFIED: OutputFormat
OUTPUT_FORMAT_PNG: OutputFormat
OUTPUT_FORMAT_WEBP: OutputFormat
OUTPUT_FORMAT_JPEG: OutputFormat
WAIT_REASON_UNSPECIFIED: WaitReason
WAIT_REASON_QUEUED: WaitReason
WAIT_REASON_TASK_PAUSED: WaitReason
WAIT_REASON_QUEUE_PAUSED: WaitReason
WAIT_REASON_NO_WORKER: WaitReason
WEBHOOK_EVENT_UNSPECIFIED: WebhookEvent
WEBHOOK_EVENT_TASK_FINISHED: WebhookEvent
WEBHOOK_EVENT_SUBTASK_FINISHED: WebhookEvent

class VariableValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class Webhook(_message.Message):
    __slots__ = ("url", "secret", "events")
    URL_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    url: str
    secret: str
    events: _containers.RepeatedScalarFieldContainer[WebhookEvent]
    def __init__(self, url: _Optional[str] = ..., secret: _Optional[str] = ..., events: _Optional[_Iterable[_Union[WebhookEvent, str]]] = ...) -> None: ...

class TaskSettings(_message.Message):
    __slots__ = ("ratio", "seed", "use_polish", "queue", "negative_prompt", "output_format", "webhook", "reuse_results", "share_results")
    RATIO_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    USE_POLISH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    REUSE_RESULTS_FIELD_NUMBER: _ClassVar[int]
    SHARE_RESULTS_FIELD_NUMBER: _ClassVar[int]
    ratio: str
    seed: int
    use_polish: bool
    queue: Queue
    negative_prompt: str
    output_format: OutputFormat
    webhook: Webhook
    reuse_results: bool
    share_results: bool
    def __init__(self, ratio: _Optional[str] = ..., seed: _Optional[int] = ..., use_polish: _Optional[bool] = ..., queue: _Optional[_Union[Queue, str]] = ..., negative_prompt: _Optional[str] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., webhook: _Optional[_Union[Webhook, _Mapping]] = ..., reuse_results: _Optional[bool] = ..., share_results: _Optional[bool] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("type", "message")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ImageResult(_message.Message):
    __slots__ = ("object_name", "content_type", "width", "height", "size_bytes", "sha256")
    OBJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    object_name: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    sha256: str
    def __init__(self, object_name: _Optional[str] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "task_name", "owner_id", "tags", "prompt_template", "variables", "zip_groups", "images_per_combination", "settings", "priority", "state", "total_images", "succeeded_count", "failed_count", "cancelled_count", "running_count", "progress", "all_subtasks_completed", "queue_position", "eta", "is_deleted", "create_time", "start_time", "finish_time", "update_time", "version", "paused", "wait_reason")
    class VariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: VariableValues
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[VariableValues, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    ZIP_GROUPS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_PER_COMBINATION_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_IMAGES_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_COUNT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_COUNT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ALL_SUBTASKS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    IS_DELETED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    WAIT_REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    task_name: str
    owner_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    prompt_template: str
    variables: _containers.MessageMap[str, VariableValues]
    zip_groups: _containers.RepeatedCompositeFieldContainer[ZipGroup]
    images_per_combination: int
    settings: TaskSettings
    priority: int
    state: TaskState
    total_images: int
    succeeded_count: int
    failed_count: int
    cancelled_count: int
    running_count: int
    progress: float
    all_subtasks_completed: bool
    queue_position: int
    eta: _duration_pb2.Duration
    is_deleted: bool
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    version: int
    paused: bool
    wait_reason: WaitReason
    def __init__(self, id: _Optional[str] = ..., task_name: _Optional[str] = ..., owner_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., prompt_template: _Optional[str] = ..., variables: _Optional[_Mapping[str, VariableValues]] = ..., zip_groups: _Optional[_Iterable[_Union[ZipGroup, _Mapping]]] = ..., images_per_combination: _Optional[int] = ..., settings: _Optional[_Union[TaskSettings, _Mapping]] = ..., priority: _Optional[int] = ..., state: _Optional[_Union[TaskState, str]] = ..., total_images: _Optional[int] = ..., succeeded_count: _Optional[int] = ..., failed_count: _Optional[int] = ..., cancelled_count: _Optional[int] = ..., running_count: _Optional[int] = ..., progress: _Optional[float] = ..., all_subtasks_completed: _Optional[bool] = ..., queue_position: _Optional[int] = ..., eta: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., is_deleted: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., paused: _Optional[bool] = ..., wait_reason: _Optional[_Union[WaitReason, str]] = ...) -> None: ...

class ZipGroup(_message.Message):
    __slots__ = ("variables",)
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    variables: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, variables: _Optional[_Iterable[str]] = ...) -> None: ...

class Subtask(_message.Message):
    __slots__ = ("id", "task_id", "index", "variable_values", "prompt", "negative_prompt", "polished_prompt", "ratio", "width", "height", "seed", "use_polish", "queue", "state", "attempt", "error", "retried_from", "result", "queue_time", "start_time", "finish_time", "render_duration", "worker_id", "reused_from", "held")
    class VariableValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    POLISHED_PROMPT_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    USE_POLISH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRIED_FROM_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    RENDER_DURATION_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    REUSED_FROM_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    id: str
    task_id: str
    index: int
    variable_values: _containers.ScalarMap[str, str]
    prompt: str
    negative_prompt: str
    polished_prompt: str
    ratio: str
    width: int
    height: int
    seed: int
    use_polish: bool
    queue: Queue
    state: SubtaskState
    attempt: int
    error: ErrorDetail
    retried_from: str
    result: ImageResult
    queue_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    render_duration: _duration_pb2.Duration
    worker_id: str
    reused_from: str
    held: bool
    def __init__(self, id: _Optional[str] = ..., task_id: _Optional[str] = ..., index: _Optional[int] = ..., variable_values: _Optional[_Mapping[str, str]] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., polished_prompt: _Optional[str] = ..., ratio: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., seed: _Optional[int] = ..., use_polish: _Optional[bool] = ..., queue: _Optional[_Union[Queue, str]] = ..., state: _Optional[_Union[SubtaskState, str]] = ..., attempt: _Optional[int] = ..., error: _Optional[_Union[ErrorDetail, _Mapping]] = ..., retried_from: _Optional[str] = ..., result: _Optional[_Union[ImageResult, _Mapping]] = ..., queue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., render_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., worker_id: _Optional[str] = ..., reused_from: _Optional[str] = ..., held: _Optional[bool] = ...) -> None: ...

class CreateTaskRequest(_message.Message):
    __slots__ = ("task_name", "prompt_template", "variables", "zip_groups", "images_per_combination", "settings", "priority", "tags", "request_id", "validate_only")
    class VariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: VariableValues
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[VariableValues, _Mapping]] = ...) -> None: ...
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    ZIP_GROUPS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_PER_COMBINATION_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    prompt_template: str
    variables: _containers.MessageMap[str, VariableValues]
    zip_groups: _containers.RepeatedCompositeFieldContainer[ZipGroup]
    images_per_combination: int
    settings: TaskSettings
    priority: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    validate_only: bool
    def __init__(self, task_name: _Optional[str] = ..., prompt_template: _Optional[str] = ..., variables: _Optional[_Mapping[str, VariableValues]] = ..., zip_groups: _Optional[_Iterable[_Union[ZipGroup, _Mapping]]] = ..., images_per_combination: _Optional[int] = ..., settings: _Optional[_Union[TaskSettings, _Mapping]] = ..., priority: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class CreateTaskResponse(_message.Message):
    __slots__ = ("task", "eta")
    TASK_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    task: Task
    eta: _duration_pb2.Duration
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., eta: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class GetTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "states", "tag", "search", "owner_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[TaskState]
    tag: str
    search: str
    owner_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[TaskState, str]]] = ..., tag: _Optional[str] = ..., search: _Optional[str] = ..., owner_id: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class VariableFilter(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class GetTaskGridRequest(_message.Message):
    __slots__ = ("task_id", "row_variable", "column_variable")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROW_VARIABLE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_VARIABLE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    row_variable: str
    column_variable: str
    def __init__(self, task_id: _Optional[str] = ..., row_variable: _Optional[str] = ..., column_variable: _Optional[str] = ...) -> None: ...

class GetTaskGridResponse(_message.Message):
    __slots__ = ("grid",)
    GRID_FIELD_NUMBER: _ClassVar[int]
    grid: TaskGrid
    def __init__(self, grid: _Optional[_Union[TaskGrid, _Mapping]] = ...) -> None: ...

class SubtaskCounts(_message.Message):
    __slots__ = ("total", "pending", "queued", "running", "succeeded", "failed", "cancelled", "held")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    total: int
    pending: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    held: int
    def __init__(self, total: _Optional[int] = ..., pending: _Optional[int] = ..., queued: _Optional[int] = ..., running: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ..., held: _Optional[int] = ...) -> None: ...

class ValueCounts(_message.Message):
    __slots__ = ("value", "counts")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    value: str
    counts: SubtaskCounts
    def __init__(self, value: _Optional[str] = ..., counts: _Optional[_Union[SubtaskCounts, _Mapping]] = ...) -> None: ...

class VariableCounts(_message.Message):
    __slots__ = ("name", "values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.RepeatedCompositeFieldContainer[ValueCounts]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[_Union[ValueCounts, _Mapping]]] = ...) -> None: ...

class GridCell(_message.Message):
    __slots__ = ("row_value", "column_value", "counts")
    ROW_VALUE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    row_value: str
    column_value: str
    counts: SubtaskCounts
    def __init__(self, row_value: _Optional[str] = ..., column_value: _Optional[str] = ..., counts: _Optional[_Union[SubtaskCounts, _Mapping]] = ...) -> None: ...

class GridTable(_message.Message):
    __slots__ = ("row_variable", "column_variable", "row_values", "column_values", "cells")
    ROW_VARIABLE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_VARIABLE_FIELD_NUMBER: _ClassVar[int]
    ROW_VALUES_FIELD_NUMBER: _ClassVar[int]
    COLUMN_VALUES_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    row_variable: str
    column_variable: str
    row_values: _containers.RepeatedScalarFieldContainer[str]
    column_values: _containers.RepeatedScalarFieldContainer[str]
    cells: _containers.RepeatedCompositeFieldContainer[GridCell]
    def __init__(self, row_variable: _Optional[str] = ..., column_variable: _Optional[str] = ..., row_values: _Optional[_Iterable[str]] = ..., column_values: _Optional[_Iterable[str]] = ..., cells: _Optional[_Iterable[_Union[GridCell, _Mapping]]] = ...) -> None: ...

class TaskGrid(_message.Message):
    __slots__ = ("task_id", "version", "total", "variables", "table")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    version: int
    total: SubtaskCounts
    variables: _containers.RepeatedCompositeFieldContainer[VariableCounts]
    table: GridTable
    def __init__(self, task_id: _Optional[str] = ..., version: _Optional[int] = ..., total: _Optional[_Union[SubtaskCounts, _Mapping]] = ..., variables: _Optional[_Iterable[_Union[VariableCounts, _Mapping]]] = ..., table: _Optional[_Union[GridTable, _Mapping]] = ...) -> None: ...

class ListSubtasksRequest(_message.Message):
    __slots__ = ("task_id", "page_size", "page_token", "states", "variable_filters")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FILTERS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[SubtaskState]
    variable_filters: _containers.RepeatedCompositeFieldContainer[VariableFilter]
    def __init__(self, task_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[SubtaskState, str]]] = ..., variable_filters: _Optional[_Iterable[_Union[VariableFilter, _Mapping]]] = ...) -> None: ...

class ListSubtasksResponse(_message.Message):
    __slots__ = ("subtasks", "next_page_token")
    SUBTASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    subtasks: _containers.RepeatedCompositeFieldContainer[Subtask]
    next_page_token: str
    def __init__(self, subtasks: _Optional[_Iterable[_Union[Subtask, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("task_id", "variable_filters")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FILTERS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    variable_filters: _containers.RepeatedCompositeFieldContainer[VariableFilter]
    def __init__(self, task_id: _Optional[str] = ..., variable_filters: _Optional[_Iterable[_Union[VariableFilter, _Mapping]]] = ...) -> None: ...

class CancelTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class PauseTaskRequest(_message.Message):
    __slots__ = ("task_id", "variable_filters")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FILTERS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    variable_filters: _containers.RepeatedCompositeFieldContainer[VariableFilter]
    def __init__(self, task_id: _Optional[str] = ..., variable_filters: _Optional[_Iterable[_Union[VariableFilter, _Mapping]]] = ...) -> None: ...

class PauseTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class ResumeTaskRequest(_message.Message):
    __slots__ = ("task_id", "variable_filters")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FILTERS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    variable_filters: _containers.RepeatedCompositeFieldContainer[VariableFilter]
    def __init__(self, task_id: _Optional[str] = ..., variable_filters: _Optional[_Iterable[_Union[VariableFilter, _Mapping]]] = ...) -> None: ...

class ResumeTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class UpdateTaskRequest(_message.Message):
    __slots__ = ("task", "update_mask")
    TASK_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class DeleteTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class DeleteTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RetryTaskRequest(_message.Message):
    __slots__ = ("task_id", "variable_filters")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FILTERS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    variable_filters: _containers.RepeatedCompositeFieldContainer[VariableFilter]
    def __init__(self, task_id: _Optional[str] = ..., variable_filters: _Optional[_Iterable[_Union[VariableFilter, _Mapping]]] = ...) -> None: ...

class RetryTaskResponse(_message.Message):
    __slots__ = ("task", "retried_count")
    TASK_FIELD_NUMBER: _ClassVar[int]
    RETRIED_COUNT_FIELD_NUMBER: _ClassVar[int]
    task: Task
    retried_count: int
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., retried_count: _Optional[int] = ...) -> None: ...

class WatchTaskRequest(_message.Message):
    __slots__ = ("task_id", "after_version", "include_subtasks", "batch_subtasks", "include_grid")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SUBTASKS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SUBTASKS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_GRID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    after_version: int
    include_subtasks: bool
    batch_subtasks: bool
    include_grid: bool
    def __init__(self, task_id: _Optional[str] = ..., after_version: _Optional[int] = ..., include_subtasks: _Optional[bool] = ..., batch_subtasks: _Optional[bool] = ..., include_grid: _Optional[bool] = ...) -> None: ...

class WatchTaskResponse(_message.Message):
    __slots__ = ("task", "subtask", "snapshot", "subtasks", "grid")
    TASK_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    SUBTASKS_FIELD_NUMBER: _ClassVar[int]
    GRID_FIELD_NUMBER: _ClassVar[int]
    task: Task
    subtask: Subtask
    snapshot: bool
    subtasks: _containers.RepeatedCompositeFieldContainer[Subtask]
    grid: TaskGrid
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., subtask: _Optional[_Union[Subtask, _Mapping]] = ..., snapshot: _Optional[bool] = ..., subtasks: _Optional[_Iterable[_Union[Subtask, _Mapping]]] = ..., grid: _Optional[_Union[TaskGrid, _Mapping]] = ...) -> None: ...

class GetImageRequest(_message.Message):
    __slots__ = ("subtask_id", "thumbnail")
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    thumbnail: bool
    def __init__(self, subtask_id: _Optional[str] = ..., thumbnail: _Optional[bool] = ...) -> None: ...

class ImageMetadata(_message.Message):
    __slots__ = ("subtask_id", "task_id", "content_type", "size_bytes", "width", "height", "sha256", "prompt", "seed")
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    task_id: str
    content_type: str
    size_bytes: int
    width: int
    height: int
    sha256: str
    prompt: str
    seed: int
    def __init__(self, subtask_id: _Optional[str] = ..., task_id: _Optional[str] = ..., content_type: _Optional[str] = ..., size_bytes: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., sha256: _Optional[str] = ..., prompt: _Optional[str] = ..., seed: _Optional[int] = ...) -> None: ...

class GetImageResponse(_message.Message):
    __slots__ = ("metadata", "chunk")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    metadata: ImageMetadata
    chunk: bytes
    def __init__(self, metadata: _Optional[_Union[ImageMetadata, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class GetSystemStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StateCount(_message.Message):
    __slots__ = ("state", "count")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    state: str
    count: int
    def __init__(self, state: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class GetSystemStatsResponse(_message.Message):
    __slots__ = ("tasks_by_state", "subtasks_by_state", "images_last_minute", "images_per_minute_last_hour", "outbox_backlog", "live_workers")
    TASKS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    SUBTASKS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_LAST_MINUTE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_PER_MINUTE_LAST_HOUR_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_BACKLOG_FIELD_NUMBER: _ClassVar[int]
    LIVE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    tasks_by_state: _containers.RepeatedCompositeFieldContainer[StateCount]
    subtasks_by_state: _containers.RepeatedCompositeFieldContainer[StateCount]
    images_last_minute: int
    images_per_minute_last_hour: float
    outbox_backlog: int
    live_workers: int
    def __init__(self, tasks_by_state: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., subtasks_by_state: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., images_last_minute: _Optional[int] = ..., images_per_minute_last_hour: _Optional[float] = ..., outbox_backlog: _Optional[int] = ..., live_workers: _Optional[int] = ...) -> None: ...

class GetQueueStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueStats(_message.Message):
    __slots__ = ("queue", "pending", "in_flight", "redelivered", "consumers", "oldest_age", "paused", "waiting_dispatch")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    REDELIVERED_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AGE_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    WAITING_DISPATCH_FIELD_NUMBER: _ClassVar[int]
    queue: Queue
    pending: int
    in_flight: int
    redelivered: int
    consumers: int
    oldest_age: _duration_pb2.Duration
    paused: bool
    waiting_dispatch: int
    def __init__(self, queue: _Optional[_Union[Queue, str]] = ..., pending: _Optional[int] = ..., in_flight: _Optional[int] = ..., redelivered: _Optional[int] = ..., consumers: _Optional[int] = ..., oldest_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., paused: _Optional[bool] = ..., waiting_dispatch: _Optional[int] = ...) -> None: ...

class GetQueueStatsResponse(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[QueueStats]
    def __init__(self, queues: _Optional[_Iterable[_Union[QueueStats, _Mapping]]] = ...) -> None: ...

class Worker(_message.Message):
    __slots__ = ("worker_id", "queues", "concurrency", "in_flight", "processed", "failed", "version", "start_time", "heartbeat_time", "hostname")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    queues: _containers.RepeatedScalarFieldContainer[Queue]
    concurrency: int
    in_flight: int
    processed: int
    failed: int
    version: str
    start_time: _timestamp_pb2.Timestamp
    heartbeat_time: _timestamp_pb2.Timestamp
    hostname: str
    def __init__(self, worker_id: _Optional[str] = ..., queues: _Optional[_Iterable[_Union[Queue, str]]] = ..., concurrency: _Optional[int] = ..., in_flight: _Optional[int] = ..., processed: _Optional[int] = ..., failed: _Optional[int] = ..., version: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hostname: _Optional[str] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    def __init__(self, workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ...) -> None: ...

class PauseQueueRequest(_message.Message):
    __slots__ = ("queue",)
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    queue: Queue
    def __init__(self, queue: _Optional[_Union[Queue, str]] = ...) -> None: ...

class PauseQueueResponse(_message.Message):
    __slots__ = ("queue",)
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    queue: QueueStats
    def __init__(self, queue: _Optional[_Union[QueueStats, _Mapping]] = ...) -> None: ...

class ResumeQueueRequest(_message.Message):
    __slots__ = ("queue",)
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    queue: Queue
    def __init__(self, queue: _Optional[_Union[Queue, str]] = ...) -> None: ...

class ResumeQueueResponse(_message.Message):
    __slots__ = ("queue",)
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    queue: QueueStats
    def __init__(self, queue: _Optional[_Union[QueueStats, _Mapping]] = ...) -> None: ...
