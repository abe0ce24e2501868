"""vLLM offline teacher: whole batches through ``vllm.LLM.chat`` on a GPU machine (optional extra)."""

from __future__ import annotations

from typing import Any

from domainkd.config import TeacherConfig
from domainkd.errors import DomainKDError
from domainkd.teachers.base import Messages, Reply, generation_settings, register_teacher

_MISSING_VLLM = (
    "the vllm teacher backend needs vLLM, which is not installed; run `pip install vllm` "
    "(or `pip install domainkd[vllm]`) on a GPU machine, or use `backend: openai` against a vLLM server."
)


@register_teacher("vllm")
class VLLMTeacher:
    """A model served by vLLM inside this process; vLLM schedules each batch itself."""

    def __init__(self, config: TeacherConfig) -> None:
        self.config = config
        self.identity = f"vllm:{config.model}"
        self.batch_size = config.batch_size
        self._llm: Any = None

    def settings(self) -> dict[str, Any]:
        """Generation settings that decide the answer, the number format included unless left to vLLM (``auto``)."""
        settings = generation_settings(self.config)
        if self.config.dtype != "auto":
            settings["dtype"] = self.config.dtype
        return settings

    def load(self) -> None:
        """Start the vLLM engine once on the resolved local model directory.

        Raises:
            DomainKDError: vLLM is not installed, or the model reference cannot be resolved.
        """
        if self._llm is not None:
            return
        try:
            import vllm
        except ImportError:
            raise DomainKDError(_MISSING_VLLM) from None
        from domainkd.models import resolve_model

        directory = resolve_model(self.config.model)
        self._llm = vllm.LLM(
            model=str(directory),
            dtype=self.config.dtype,
            trust_remote_code=self.config.trust_remote_code,
            seed=self.config.seed,
        )

    def generate(
        self, conversations: list[Messages], max_new_tokens: int | None = None, expect_json: bool = False
    ) -> list[Reply]:
        """Answer each conversation with vLLM's exact token counts.

        ``expect_json`` is left to the prompt and to :func:`ask`'s repair (no constrained decoding).
        """
        self.load()
        from vllm import SamplingParams

        sampling = SamplingParams(
            max_tokens=max_new_tokens or self.config.max_new_tokens,
            temperature=self.config.temperature,
            top_p=self.config.top_p if self.config.temperature > 0 else 1.0,
            seed=self.config.seed,
        )
        outputs = self._llm.chat(conversations, sampling, use_tqdm=False)
        return [_reply(output) for output in outputs]


def _reply(output: Any) -> Reply:
    """A :class:`Reply` from one vLLM ``RequestOutput`` (first completion)."""
    completion = output.outputs[0]
    return Reply(
        completion.text.strip(),
        prompt_tokens=len(output.prompt_token_ids or []),
        completion_tokens=len(completion.token_ids),
    )
