"""Local Hugging Face teacher: continuous batching of up to ``batch_size`` sequences, greedy or sampled."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch

from domainkd.config import TeacherConfig
from domainkd.models import generate_stream, load_causal_lm, native_on_cpu, render_prompt
from domainkd.teachers.base import Messages, Reply, generation_settings, register_teacher

logger = logging.getLogger(__name__)


def teacher_dtype(name: str) -> torch.dtype:
    """The torch dtype a teacher's ``dtype`` setting names.

    ``auto`` is bfloat16 on a GPU that supports it (float16 on older ones) and on a CPU with
    native bf16 arithmetic, where it decodes about twice as fast as float32; float32 on any other
    CPU, where bf16 is emulated and slow.
    """
    if name == "auto" and torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name == "auto":
        return torch.bfloat16 if native_on_cpu(torch.bfloat16) else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


@register_teacher("hf")
class HFTeacher:
    """A causal LM loaded in this process, in the configured ``dtype`` (see :func:`teacher_dtype`)."""

    def __init__(self, config: TeacherConfig) -> None:
        self.config = config
        self.identity = f"hf:{config.model}"
        self.batch_size = config.batch_size
        self.dtype = teacher_dtype(config.dtype)
        self._model = None
        self._tokenizer = None

    def settings(self) -> dict[str, Any]:
        """Generation settings that decide the answer, the number format included unless it is float32.

        float32 stays unnamed so that answers stored before the setting existed keep their keys.
        """
        settings = generation_settings(self.config)
        if self.dtype != torch.float32:
            settings["dtype"] = str(self.dtype).removeprefix("torch.")
        return settings

    def load(self) -> None:
        """Load the model and tokenizer once."""
        if self._model is None:
            if not torch.cuda.is_available() and native_on_cpu(self.dtype) is False:
                logger.warning("this CPU has no native %s arithmetic, so the teacher runs slower than in float32 "
                               "here; set teacher.dtype: float32", self.config.dtype)  # fmt: skip
            self._model, self._tokenizer = load_causal_lm(
                self.config.model, dtype=self.dtype, trust_remote_code=self.config.trust_remote_code
            )
            if torch.cuda.is_available():
                self._model.to("cuda")

    def generate(
        self, conversations: list[Messages], max_new_tokens: int | None = None, expect_json: bool = False
    ) -> list[Reply]:
        """Answer each conversation with its decoded completion, stripped, and its token counts.

        ``expect_json`` changes nothing here: the prompt asks for JSON and :func:`ask` repairs it.
        The completion count is that of the stripped answer text re-encoded, without the end token.
        """
        replies = dict(self.generate_stream(conversations, max_new_tokens, expect_json))
        return [replies[index] for index in range(len(conversations))]

    def generate_stream(
        self, conversations: list[Messages], max_new_tokens: int | None = None, expect_json: bool = False
    ) -> Iterator[tuple[int, Reply]]:
        """:meth:`generate`, each reply as soon as its sequence ends: ``(conversation index, reply)``.

        Up to ``batch_size`` sequences decode at once and a finished one's slot goes to the next
        conversation (:func:`domainkd.models.generate_stream`).
        """
        self.load()
        prompts = [render_prompt(self._tokenizer, conversation) for conversation in conversations]
        finished = generate_stream(
            self._model,
            self._tokenizer,
            prompts,
            max_new_tokens=max_new_tokens or self.config.max_new_tokens,
            slots=self.batch_size,
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            seed=self.config.seed,
        )
        for index, text in finished:
            yield index, Reply(text, prompt_tokens=self._count_tokens(prompts[index]), completion_tokens=self._count_tokens(text))

    def _count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as generation encodes it (no special tokens added)."""
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])
