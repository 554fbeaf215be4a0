"""Text generation with transformers: a prompt or chat messages in, text out, streamed or whole.

Native job: `{"prompt": ...}` or `{"messages": [...]}` with sampling parameters (at the top level or
under `parameters`) and `"stream": true|false`. The answer is `{"generated_text", "finish_reason",
"usage"}`, or streamed as `{"text": delta}` chunks and a last `{"text": "", "finish_reason", "usage"}`.
OpenAI's `/v1/chat/completions` is served from the same chunks by the adapter.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from .._schemas import GenerationRequest, JobError, Limits, validate
from ._placement import placement_kwargs
from .base import JobContext, LoadContext, Task, heavy, one_line

FinishReason = Literal["stop", "length"]


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A tokenised generation request, ready for `generate` or `stream`."""

    input_ids: Any
    attention_mask: Any
    kwargs: dict[str, Any]
    stop: tuple[str, ...]
    max_new_tokens: int
    seed: int | None

    @property
    def prompt_tokens(self) -> int:
        return int(self.input_ids.shape[-1])


@dataclasses.dataclass(frozen=True)
class Generated:
    """The end of a generation: the text (already cut at a stop sequence) and its token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason

    @property
    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


class StopScanner:
    """Cuts generated text at the first stop sequence, holding back what could be the start of one.

    Feed it text as it arrives; `feed` returns what is safe to send now. Once a stop sequence is
    seen, `stopped` is true and nothing more is returned.
    """

    libraries = ("transformers",)

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.text = ""
        self.sent = 0
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.text += piece
        longest = max((len(s) for s in self.stops), default=0)
        start = max(0, self.sent - longest)
        cuts = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
        if cuts:
            self.stopped = True
            self.text = self.text[: min(cuts)]
            return self._take(len(self.text))
        return self._take(len(self.text) - self._held())

    def flush(self) -> str:
        return "" if self.stopped else self._take(len(self.text))

    def _held(self) -> int:
        """Length of the longest tail of the text that begins a stop sequence."""
        for n in range(min(len(self.text), max((len(s) for s in self.stops), default=1) - 1), 0, -1):
            tail = self.text[-n:]
            if any(s.startswith(tail) for s in self.stops):
                return n
        return 0

    def _take(self, end: int) -> str:
        end = max(end, self.sent)
        out, self.sent = self.text[self.sent : end], end
        return out


class GenerationTask(Task[GenerationRequest]):
    """A causal language model and its tokenizer: prompts or chat messages in, text out."""

    name = "text-generation"

    def __init__(self, model: Any, tokenizer: Any, device: str, limits: Limits) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.limits = limits
        self._seed_lock = threading.Lock()

    @classmethod
    def load(cls, ctx: LoadContext) -> GenerationTask:
        transformers = heavy("transformers")
        folder = str(ctx.path)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        # Placed on the device as it is read (`device_map`), never built on the host and moved.
        lm = transformers.AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, **placement_kwargs(ctx.device), **ctx.read_kwargs
        )
        lm.eval()
        return cls(lm, tokenizer, ctx.device, ctx.limits)

    def decode(self, payload: dict[str, Any]) -> GenerationRequest:
        return validate(GenerationRequest, payload, self.limits, what="text-generation job")

    def streams(self, request: GenerationRequest) -> bool:
        return request.stream

    def run(self, request: GenerationRequest, job: JobContext) -> Iterator[Any]:
        prompt = self.prepare(request)
        if not request.stream:
            done = self.generate(prompt)
            yield {"generated_text": done.text, "finish_reason": done.finish_reason, "usage": done.usage}
            return
        for piece in self.stream(prompt, job.cancelled):
            if isinstance(piece, Generated):
                yield {"text": "", "finish_reason": piece.finish_reason, "usage": piece.usage}
            else:
                yield {"text": piece}

    @property
    def context_length(self) -> int | None:
        config = self.model.config
        value = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        return int(value) if value else None

    def prepare(self, request: GenerationRequest) -> Prompt:
        """Apply the chat template or take the prompt, tokenise, and turn parameters into `generate` kwargs."""
        tok = self.tokenizer
        if request.messages is not None:
            if not getattr(tok, "chat_template", None):
                raise JobError("This model has no chat template; send `prompt` (plain text) instead of `messages`.")
            messages = [m.as_template_dict() for m in request.messages]
            try:
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception as exc:  # jinja raises for role orders the template forbids
                raise JobError(f"The model's chat template refused these messages: {one_line(exc)}.") from None
            encoded = tok(text, return_tensors="pt", add_special_tokens=False)
        else:
            encoded = tok(request.prompt, return_tensors="pt")
        max_new = request.max_new_tokens or self.limits.max_new_tokens
        n_prompt = int(encoded["input_ids"].shape[-1])
        context = self.context_length
        if context is not None and n_prompt + max_new > context:
            raise JobError(
                f"The prompt has {n_prompt} tokens and {max_new} new tokens were asked for, more than this "
                f"model's context of {context} tokens; shorten the prompt or lower max_new_tokens."
            )
        kwargs: dict[str, Any] = {"max_new_tokens": max_new}
        sample = request.do_sample
        if sample is None and request.temperature is not None:
            sample = request.temperature > 0
        if sample is not None:
            kwargs["do_sample"] = sample
        if sample:
            for name in ("temperature", "top_p", "top_k"):
                value = getattr(request, name)
                if value is not None and not (name == "temperature" and value == 0):
                    kwargs[name] = value
        if request.repetition_penalty is not None:
            kwargs["repetition_penalty"] = request.repetition_penalty
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is not None:
            kwargs["pad_token_id"] = pad
        return Prompt(
            encoded["input_ids"].to(self.device),
            encoded["attention_mask"].to(self.device),
            kwargs,
            tuple(request.stop),
            max_new,
            request.seed,
        )

    def generate(self, prompt: Prompt) -> Generated:
        """Generate to the end (blocking)."""
        cancel = threading.Event()
        scanner = StopScanner(prompt.stop)
        output = self._run(prompt, cancel, scanner, streamer=None)
        new_ids = output[0][prompt.prompt_tokens :]
        text = scanner.feed(self.tokenizer.decode(new_ids, skip_special_tokens=True)) + scanner.flush()
        return self._finish(prompt, text, new_ids, scanner)

    def stream(self, prompt: Prompt, cancel: threading.Event) -> Iterator[str | Generated]:
        """Yield text deltas as they are generated, then one `Generated` (blocking iterator).

        Setting `cancel` (or closing the iterator) stops the generation at the next token.
        """
        scanner = StopScanner(prompt.stop)
        streamer = heavy("transformers").TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        result: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=1)

        def work() -> None:
            try:
                result.put((self._run(prompt, cancel, scanner, streamer), None))
            except BaseException as exc:  # handed to the consumer below
                streamer.end()
                result.put((None, exc))

        thread = threading.Thread(target=work, name="volcache-generate", daemon=True)
        thread.start()
        try:
            for piece in streamer:
                delta = scanner.feed(piece)
                if delta:
                    yield delta
                if scanner.stopped:
                    cancel.set()
            tail = scanner.flush()
            if tail:
                yield tail
            output, error = result.get()
            if error is not None:
                raise error
            new_ids = output[0][prompt.prompt_tokens :]
            yield self._finish(prompt, scanner.text, new_ids, scanner)
        finally:
            cancel.set()
            thread.join(timeout=30)

    def _run(self, prompt: Prompt, cancel: threading.Event, scanner: StopScanner, streamer: Any) -> Any:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tokenizer, n_prompt, stops = self.tokenizer, prompt.prompt_tokens, prompt.stop
        longest = max((len(s) for s in stops), default=0)

        class _Stop(StoppingCriteria):
            """Stops on cancel, or when the tail of the text holds a stop sequence."""

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                done = cancel.is_set() or scanner.stopped
                if not done and stops:
                    tail = tokenizer.decode(input_ids[0][max(n_prompt, input_ids.shape[-1] - longest - 2) :])
                    done = any(s in tail for s in stops)
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        kwargs = dict(prompt.kwargs, stopping_criteria=StoppingCriteriaList([_Stop()]))
        if streamer is not None:
            kwargs["streamer"] = streamer
        with torch.inference_mode():
            if prompt.seed is not None:
                with self._seed_lock:  # torch's seed is global: seeded generations run one at a time
                    from transformers import set_seed

                    set_seed(prompt.seed)
                    return self.model.generate(
                        input_ids=prompt.input_ids, attention_mask=prompt.attention_mask, **kwargs
                    )
            return self.model.generate(input_ids=prompt.input_ids, attention_mask=prompt.attention_mask, **kwargs)

    def _finish(self, prompt: Prompt, text: str, new_ids: Any, scanner: StopScanner) -> Generated:
        n_new = int(new_ids.shape[-1])
        eos = self.tokenizer.eos_token_id
        ended = n_new > 0 and eos is not None and int(new_ids[-1]) == eos
        reason: FinishReason = "stop" if scanner.stopped or ended or n_new < prompt.max_new_tokens else "length"
        return Generated(text, prompt.prompt_tokens, n_new, reason)

    def warmup(self) -> None:
        request = GenerationRequest.model_validate(
            {"prompt": "Hello", "max_new_tokens": 2}, context={"limits": self.limits}
        )
        self.generate(self.prepare(request))
