"""Generate and ListModels: one image without a task, and what this worker can render.

Request validation reports every bad field at once; render failures map to typed errors
(a retryable one -> UNAVAILABLE, a refused prompt -> INVALID_ARGUMENT on `prompt`, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator, Callable, Iterator

from imagegen import events, imaging, pipeline, providers
from imagegen.config import ImagegenConfig
from imagegen.providers import instant, procedural
from kiln.common import errors, principal, ratios, textlimits, vocabulary
from kiln.common.bus import QUEUES
from kiln.imagegen.v1 import imagegen_pb2

MAX_PROMPT_CHARS = 4000
TEXT_LIMITS = textlimits.TextLimits(
    default=256,
    fields={
        "kiln.imagegen.v1.GenerateRequest.prompt": MAX_PROMPT_CHARS,
        "kiln.imagegen.v1.GenerateRequest.negative_prompt": MAX_PROMPT_CHARS,
    },
)
"""Every text field of every ImageGenService request is at most this long."""
_SEED_RANGE = 2**31


@dataclasses.dataclass(frozen=True)
class GenerateSpec:
    """A validated Generate request."""

    queue: str
    ratio: str
    request: providers.RenderRequest
    image_format: imaging.ImageFormat
    use_polish: bool


def validate(request: imagegen_pb2.GenerateRequest, served: tuple[str, ...]) -> GenerateSpec:
    """The request as a spec; InvalidArgument listing every bad field."""
    violations: list[errors.FieldViolation] = []

    def bad(field: str, description: str) -> None:
        violations.append(errors.FieldViolation(field, description))

    if not request.prompt.strip():
        bad("prompt", "must not be empty")
    elif len(request.prompt) > MAX_PROMPT_CHARS:
        bad("prompt", f"must be at most {MAX_PROMPT_CHARS} characters")
    if len(request.negative_prompt) > MAX_PROMPT_CHARS:
        bad("negative_prompt", f"must be at most {MAX_PROMPT_CHARS} characters")
    ratio = request.ratio or ratios.DEFAULT_RATIO
    if ratio not in ratios.RATIO_SIZES:
        bad("ratio", f"must be one of {', '.join(ratios.RATIO_SIZES)}")
    queue = _named_queue(request, bad) or served[0]
    queue_field = "queue_value" if request.queue_value and not request.queue else "queue"
    if queue not in QUEUES:
        bad(queue_field, f"must be one of {', '.join(QUEUES)}")
    elif queue not in served:
        bad(queue_field, f"this worker serves {', '.join(served)}")
    image_format = imaging.format_of(request.format)
    if image_format is None:
        bad("format", "unknown image format")
    if request.HasField("seed") and not 0 <= request.seed < 2**63:
        bad("seed", "must be 0 or more")
    if violations:
        raise errors.InvalidArgument(violations)
    width, height = ratios.size_for(ratio)
    seed = request.seed if request.HasField("seed") else secrets.randbelow(_SEED_RANGE)
    return GenerateSpec(
        queue=queue,
        ratio=ratio,
        request=providers.RenderRequest(
            prompt=request.prompt,
            width=width,
            height=height,
            seed=seed,
            negative_prompt=request.negative_prompt,
        ),
        image_format=image_format or imaging.ImageFormat.PNG,  # None was refused above
        use_polish=request.use_polish,
    )


def _named_queue(request: imagegen_pb2.GenerateRequest, bad: Callable[[str, str], None]) -> str:
    """The queue the request names, by name or as the tasks API spells it ("" for none)."""
    if not request.queue_value:
        return request.queue
    named = vocabulary.QUEUE_NAMES.get(request.queue_value)
    if named is None:
        bad("queue_value", f"unknown Queue value {request.queue_value}")
    elif request.queue and request.queue != named:
        bad("queue_value", f"names {named} but queue names {request.queue}; set one of them")
    else:
        return named
    return request.queue


def to_kiln_error(error: providers.RenderError) -> errors.KilnError:
    """The caller-facing error for a render failure."""
    if isinstance(error, providers.InvalidPrompt):
        return errors.InvalidArgument.field("prompt", error.message)
    if isinstance(error, providers.UnsupportedSize):
        return errors.InvalidArgument.field("ratio", error.message)
    if isinstance(error, providers.RateLimited):
        return errors.ResourceExhausted(
            error.message, reason="PROVIDER_RATE_LIMITED", retry_after=error.retry_after
        )
    if error.retryable:
        return errors.Unavailable(error.message, reason="PROVIDER_UNAVAILABLE")
    return errors.FailedPrecondition(error.message, reason="RENDER_FAILED")


class QueuePaused(errors.FailedPrecondition):
    """An operator paused the queue a Generate call would render on."""

    reason = "QUEUE_PAUSED"


class UserSlots:
    """Generate calls running per user on this worker, at most `limit` each: one caller's
    burst must not take every render slot (and slow everyone's tasks) on the worker."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active: dict[str, int] = {}

    @contextlib.contextmanager
    def take(self, user_id: str) -> Iterator[None]:
        """Holds one of `user_id`'s slots; RESOURCE_EXHAUSTED when all are taken."""
        running = self.active.get(user_id, 0)
        if running >= self.limit:
            raise errors.ResourceExhausted(
                f"you already have {running} Generate calls running on this worker, the "
                f"limit is {self.limit}; wait for one to finish",
                reason="TOO_MANY_GENERATE_CALLS",
                retry_after=1.0,
            )
        self.active[user_id] = running + 1
        try:
            yield
        finally:
            left = self.active[user_id] - 1
            if left:
                self.active[user_id] = left
            else:
                del self.active[user_id]


class Generator:
    """Renders single images with the worker's providers, within each user's share and
    only on queues that are not paused."""

    def __init__(
        self,
        config: ImagegenConfig,
        images: pipeline.Pipeline,
        is_paused: Callable[[str], bool] = lambda _queue: False,
    ) -> None:
        self._config = config
        self._pipeline = images
        self._is_paused = is_paused
        self.slots = UserSlots(config.generate_max_per_user)

    async def generate(self, spec: GenerateSpec) -> AsyncIterator[imagegen_pb2.GenerateResponse]:
        """Progress updates, then the image; KilnError on failure (FAILED_PRECONDITION
        QUEUE_PAUSED on a paused queue, RESOURCE_EXHAUSTED past the caller's share)."""
        if self._is_paused(spec.queue):
            raise QueuePaused(
                f"the {spec.queue} queue is paused by an operator; Generate on it is refused "
                "until the queue is resumed"
            )
        with self.slots.take(principal.current().user_id):
            async for response in self._generate(spec):
                yield response

    async def _generate(self, spec: GenerateSpec) -> AsyncIterator[imagegen_pb2.GenerateResponse]:
        updates: asyncio.Queue[imagegen_pb2.GenerateProgress] = asyncio.Queue()

        async def progress(step: int, total: int) -> None:
            await updates.put(imagegen_pb2.GenerateProgress(step=step, total_steps=total))

        work = asyncio.create_task(self._render(spec, progress))
        try:
            while not work.done() or not updates.empty():
                getter = asyncio.ensure_future(updates.get())
                await asyncio.wait({work, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield imagegen_pb2.GenerateResponse(progress=getter.result())
                else:
                    getter.cancel()
            image = work.result()
        finally:
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
        yield imagegen_pb2.GenerateResponse(image=image)

    async def _render(
        self, spec: GenerateSpec, progress: providers.ProgressCallback
    ) -> imagegen_pb2.GeneratedImage:
        try:
            async with asyncio.timeout(self._config.job_time_limit):
                rendered = await self._pipeline.render(
                    spec.queue, spec.request, use_polish=spec.use_polish, progress=progress
                )
                provenance = imaging.Provenance(
                    prompt=rendered.prompt,
                    seed=spec.request.seed,
                    model=rendered.model,
                    ratio=spec.ratio,
                    negative_prompt=spec.request.negative_prompt,
                )
                encoded = await pipeline.encode(
                    rendered, spec.image_format, provenance, with_thumbnail=False
                )
        except providers.RenderError as error:
            raise to_kiln_error(error) from None
        except TimeoutError:
            raise errors.Unavailable(
                "the image took too long to render; try again", reason="RENDER_TIMEOUT"
            ) from None
        return imagegen_pb2.GeneratedImage(
            data=encoded.image.data,
            content_type=encoded.image.content_type,
            width=encoded.image.width,
            height=encoded.image.height,
            seed=spec.request.seed,
            prompt=rendered.prompt,
            sha256=encoded.image.sha256,
            render_duration=events.duration(rendered.render_seconds),
            model=rendered.model,
        )

    def list_models(self) -> imagegen_pb2.ListModelsResponse:
        """Every queue, its provider and sizes, and whether this worker serves it."""
        names = list(ratios.RATIO_SIZES)
        sizes = [f"{w}x{h}" for w, h in ratios.RATIO_SIZES.values()]
        models = []
        for queue in QUEUES:
            provider = self._pipeline.providers.get(queue)
            models.append(
                imagegen_pb2.ModelInfo(
                    queue=queue,
                    provider=self._config.provider_kind(queue),
                    model=provider.model if provider is not None else self._configured_model(queue),
                    ratios=names,
                    sizes=sizes,
                    served=queue in self._config.worker_queues,
                )
            )
        return imagegen_pb2.ListModelsResponse(models=models, polisher=self._config.polisher)

    def _configured_model(self, queue: str) -> str:
        """The model of a queue this worker does not serve, from its config alone."""
        kind = self._config.provider_kind(queue)
        known = {"procedural": procedural.MODEL, "instant": instant.MODEL}.get(kind)
        if known is not None:
            return known
        options = self._config.provider_options(queue)
        return str(options.get("model") or options.get("api_style") or "")
