"""Typed configuration, one model per concern; YAML on disk is only their serialisation.

Relative input paths (``data.documents``, ``eval.questions``) resolve against the directory
of the config file; ``run_dir`` resolves against the current directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from domainkd.errors import DomainKDError


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


class StudentConfig(StrictModel):
    """The small model that becomes the specialist."""

    model: str = "smollm2-135m-instruct"
    """Model reference: a known name (`domainkd models list`), a local directory, a .gguf file or an HF id."""
    trust_remote_code: bool = False
    """Allow model code from the model directory to run; off unless you trust its source."""


class TeacherConfig(StrictModel):
    """The larger model that writes questions and answers; its outputs are stored once."""

    model_config = ConfigDict(**StrictModel.model_config, hide_input_in_errors=True)  # a mistyped key stays unprinted

    backend: str = "hf"
    """Teacher backend from the teacher registry: `hf` (local Hugging Face), `openai` (an OpenAI-compatible
    server: vLLM, Ollama, llama.cpp, hosted APIs) or `vllm` (vLLM offline batches on a GPU machine)."""
    model: str = "qwen2.5-coder-0.5b-instruct"
    """Model reference, same forms as the student's; for `openai`, the model name the server serves."""
    batch_size: int = Field(16, ge=1)
    """Prompts generated together in one batch (on 2 CPU cores 16–32 is ~2x faster per token than 8)."""
    max_new_tokens: int = Field(256, ge=1)
    """Upper bound on tokens the teacher writes per prompt."""
    temperature: float = Field(0.0, ge=0.0)
    """Sampling temperature; 0 means greedy decoding."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus-sampling mass when temperature > 0."""
    seed: int = 0
    """Random seed for sampling; part of the answer-store key."""
    trust_remote_code: bool = False
    """Allow model code from the model directory to run."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Number format of a local teacher's weights (`hf`, `vllm`). For `hf`, `auto` is bfloat16 on a GPU (float16
    on GPUs without bf16) and on CPUs with native bf16 (AVX512-BF16 or AMX), where it decodes about twice as fast
    as float32, and float32 on other CPUs; `vllm` leaves `auto` to the model. Answers differ slightly between
    formats, so any format other than float32 is part of the answer-store key."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """Root of the OpenAI-compatible API (`openai`), e.g. http://127.0.0.1:8000/v1 for `vllm serve`."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (`openai`); when it is unset no Authorization header is sent."""
    concurrency: int = Field(8, ge=1, le=256)
    """Requests in flight at once (`openai`)."""
    timeout_s: float = Field(120.0, gt=0)
    """Seconds one request may take before it counts as timed out and is retried (`openai`)."""
    max_retries: int = Field(5, ge=0, le=20)
    """Retries of a request after a timeout, connection error, HTTP 429 or 5xx, or malformed body (`openai`)."""
    retry_backoff_s: float = Field(1.0, gt=0, le=60)
    """Wait before the first retry, doubled for each further retry, with random jitter (`openai`)."""
    json_mode: bool = True
    """Ask the server for a JSON object (`response_format`) when the caller expects JSON (`openai`)."""
    max_failed_share: float = Field(0.1, ge=0, le=1)
    """Largest share of one stage's new teacher requests that may fail (after retries) with the run going on; more
    stops it with one sentence, the answers so far kept in the store (the failed ones are asked again next run)."""

    @field_validator("backend")
    @classmethod
    def _check_backend(cls, backend: str) -> str:
        from domainkd.teachers.base import known_teachers

        return _known_names([backend], known_teachers(), "teacher.backend")[0]

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, base_url: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", base_url):
            raise ValueError("use an http:// or https:// URL such as http://127.0.0.1:8000/v1")
        return base_url.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _check_api_key_env(cls, api_key_env: str) -> str:
        return _env_name(api_key_env, "OPENAI_API_KEY")


class RaftConfig(StrictModel):
    """Retrieval-aware fine-tuning (RAFT): training questions also asked with the excerpts retrieval finds for them.

    Each chosen question/answer example gets a copy whose prompt is the excerpt prompt the `student_with_retrieval`
    system, `compare` and `serve --retrieval` use, holding the chunks the configured retriever returns for its
    question (`retrieval` section), so the student learns to read them instead of ignoring or refusing them.
    """

    share: float = Field(1.0, gt=0, le=1)
    """Share of the question/answer examples drawn from the documents that get an excerpt copy (the closed-book
    original stays); excerpt examples are several times longer, so this is the main cost knob."""
    top_k: int | None = Field(None, ge=1, le=50)
    """Excerpts per training prompt; None uses `retrieval.top_k` (what the student reads when answering)."""
    without_gold: float = Field(0.2, ge=0, le=1)
    """Share of excerpt copies whose excerpts leave out every chunk that holds the answer (the rest have it,
    put in place of the last hit where retrieval missed it)."""
    without_gold_target: Literal["refusal", "memory"] = "refusal"
    """What an excerpt copy without the answer is trained to say: the refusal sentence (the excerpts do not
    answer it), or the answer from memory (RAFT's original recipe)."""
    answer: Literal["teacher", "source"] = "teacher"
    """What an excerpt copy holding the answer is trained to say: the example's own answer (the teacher's
    wording), or the source fact the question was written from (a sentence, or a list item with its lead-in line; the student
    learns to find and quote the sentence that answers; examples without a source sentence keep their answer)."""
    refusals: bool = True
    """Refusal examples get an excerpt copy too (the excerpts retrieved for an out-of-scope question), so the
    student learns to refuse when the excerpts do not hold the answer."""
    keep_closed_book: bool = True
    """Keep each copied example closed-book too. False trains the chosen questions with excerpts only (RAFT's own
    recipe): a question also learnt closed-book is answered from memory, so its copy teaches little reading."""
    order: Literal["retrieved", "shuffled"] = "retrieved"
    """Excerpts in the retriever's order (as when answering), or shuffled so the answer's position varies."""
    seed: int = 0
    """Seed of which examples get copies, which leave the answer out, and of the shuffle."""


class DataConfig(StrictModel):
    """Where the domain knowledge is and how training examples are built from it."""

    documents: Path | None = Path("docs")
    """Folder of .md / .txt / .html / .pdf documents (searched recursively); None with only records, QA sets, ReBase."""
    records: list[Path] = Field(default_factory=list)
    """Structured files or folders of them (.csv, .jsonl, .json, .parquet): table rows or knowledge-graph triples."""
    qa_sets: list[Path] = Field(default_factory=list)
    """Existing question/answer sets (.jsonl, .csv, .json, .parquet with a question and an answer column)."""
    tokenizer: str | None = None
    """Model reference whose tokenizer measures chunks; None uses the student's."""
    chunk_tokens: int = Field(320, ge=16)
    """Largest chunk, in tokens; a section that fits stays whole."""
    chunk_overlap_tokens: int = Field(40, ge=0)
    """Tokens repeated between consecutive chunks of a long section."""
    strategies: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"context_qa": {}, "refusal": {}}
    )
    """Data strategies to combine, each name mapped to its own parameters (see the strategy registry)."""
    raft: RaftConfig | None = None
    """Retrieval-aware fine-tuning copies of the training examples (see `RaftConfig`); None trains closed-book only."""

    @property
    def has_sources(self) -> bool:
        """Whether documents, records or QA sets are configured (else only a ReBase datastore can be the source)."""
        return self.documents is not None or bool(self.records) or bool(self.qa_sets)

    @model_validator(mode="after")
    def _check_overlap(self) -> DataConfig:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("data.chunk_overlap_tokens must be smaller than data.chunk_tokens")
        if not self.has_sources:  # a ReBase datastore is a source too
            if "rebase" not in self.strategies:
                raise ValueError(
                    "data has no source; set data.documents, data.records or data.qa_sets, or use the rebase strategy"
                )
            if others := sorted(set(self.strategies) - {"rebase"}):
                raise ValueError(
                    f"data has no source for {', '.join(others)}; set data.documents, data.records or data.qa_sets, "
                    "or keep only the rebase strategy"
                )
        return self

    @field_validator("strategies")
    @classmethod
    def _check_strategies(cls, strategies: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from domainkd.data.strategies import validate_strategy_params

        if not strategies:
            raise ValueError("data.strategies is empty; name at least one strategy such as context_qa")
        return {name: validate_strategy_params(name, params or {}) for name, params in strategies.items()}


class KDConfig(StrictModel):
    """White-box distillation: train on the teacher's token distributions as well as its answers."""

    teacher: str | None = None
    """Model reference of the white-box teacher; None uses `teacher.model` of the run."""
    loss: Literal["vanilla", "dskd", "uld", "mined"] = "vanilla"
    """KD objective by name in domainkd.distill.trainer.KD_LOSSES, each (1 − alpha)·CE + alpha·KD term. `vanilla`:
    the divergence between the two distributions (same vocabulary); `dskd`: Dual-Space KD, learned projectors
    between the hidden spaces, with cross-model attention when the tokenizers differ; `uld`: sorted-probability
    L1 (any tokenizers); `mined`: the divergence where the two tokenizers' tokens start at the same place and the
    teacher's maps to the student's by edit distance (different tokenizers)."""
    divergence: str = "forward_kl"
    """Divergence between teacher and student distributions, by name from domainkd.distill.losses.DIVERGENCES."""
    divergence_params: dict[str, float] = Field(default_factory=dict)
    """The divergence's own parameters: `beta` (jsd), `skew` (skew_forward_kl, skew_reverse_kl), `mu` (adaptive_kl)."""
    teacher_space_divergence: str = "forward_kl"
    """DSKD only: the divergence of its teacher-space term (the student projected into the teacher's space, the
    teacher as target); forward KL as the DSKD repository, whatever `divergence` is. It gets `divergence_params`
    only when it is the same divergence."""
    alpha: float = Field(0.5, ge=0, le=1)
    """Weight of the divergence; 1 − alpha weighs the cross-entropy on the teacher's answer tokens."""
    temperature: float = Field(1.0, gt=0)
    """Softens both distributions in the divergence (the cross-entropy stays at 1)."""
    scale_by_temperature_squared: bool = False
    """Multiply the divergence by temperature² so its gradient scale does not shrink with the temperature."""
    teacher_logits: Literal["online", "offline"] = "offline"
    """`offline`: record the teacher's top-k once, train without it in memory; `online`: run it at every step."""
    top_k: int = Field(64, ge=1)
    """Teacher tokens kept per position when offline; the rest of its mass is one bucket."""
    tail_samples: int = Field(8, ge=0)
    """Offline vanilla forward KL: ids drawn per position and epoch from the teacher's tail (outside its top k),
    with the tail's entropy, so the loss estimates the full-vocabulary KL without bias (top-k + bucket alone is
    ~10% low); the store keeps this many for every epoch and no draw is used twice. 0 stores none."""
    chunk_size: int | None = Field(None, ge=1)
    """Positions per loss chunk, recomputed in backward to bound float32 vocabulary-sized memory; None: all at once."""
    projector_learning_rate: float | None = Field(1e-3, gt=0)
    """Peak learning rate of DSKD's projectors (the DSKD repository's 1e-3); None: the student's `learning_rate`."""
    on_policy_fraction: float = Field(0.0, ge=0, le=1)
    """Share of steps trained on answers the student samples itself, scored by the teacher (GKD); needs online."""
    on_policy_max_new_tokens: int = Field(64, ge=1)
    """Longest answer the student samples on an on-policy step."""
    teacher_context: Literal["none", "source"] = "none"
    """`source`: context distillation (Kujanpää et al. 2024): the teacher reads each training example's source
    chunk before the question (the excerpt prompt), the student does not, and the student learns the teacher's
    distributions on the same answer; examples without a source chunk are read as they are. Offline only."""

    @field_validator("divergence", "teacher_space_divergence")
    @classmethod
    def _check_divergence(cls, divergence: str, info: ValidationInfo) -> str:
        from domainkd.distill.losses import DIVERGENCES

        return _known_names([divergence], DIVERGENCES, f"train.kd.{info.field_name}")[0]

    @model_validator(mode="after")
    def _check_divergence_params(self) -> KDConfig:
        import inspect

        import torch

        from domainkd.distill.losses import DIVERGENCES

        divergence = DIVERGENCES[self.divergence]
        known = list(inspect.signature(divergence).parameters)[3:]  # after (student, teacher, temperature)
        unknown = [name for name in self.divergence_params if name not in known]
        if unknown:
            takes = f"takes only {', '.join(known)}" if known else "takes no parameters"
            raise ValueError(f"divergence_params has {unknown[0]!r}, but {self.divergence} {takes}")
        try:  # the divergence's own range checks, each one sentence
            divergence(torch.zeros(2), torch.zeros(2), **self.divergence_params)
        except ValueError as error:
            raise ValueError(f"divergence_params: {str(error).rstrip('.')}") from None
        if self.on_policy_fraction > 0 and self.teacher_logits != "online":
            raise ValueError(
                "on_policy_fraction > 0 needs teacher_logits: online (the teacher must score the student's own "
                "samples as they are drawn); set teacher_logits: online or on_policy_fraction: 0"
            )
        if self.teacher_context != "none" and self.teacher_logits != "offline":
            raise ValueError("teacher_context needs teacher_logits: offline (the store records what the teacher read)")
        if self.on_policy_fraction > 0 and self.loss in ("uld", "mined"):
            raise ValueError(f"on_policy_fraction > 0 works with the vanilla and dskd losses, not {self.loss}")
        return self


class TrainConfig(StrictModel):
    """How the student is fine-tuned on the teacher's answers (Hugging Face Trainer underneath)."""

    method: Literal["full", "lora"] = "full"
    """`full` updates every weight (measured best for learning facts); `lora` trains adapters via peft."""
    epochs: float = Field(6.0, gt=0)
    """Passes over the training set."""
    learning_rate: float = Field(5e-5, gt=0)
    """Peak learning rate (linear decay after warm-up)."""
    batch_size: int = Field(8, ge=1)
    """Examples per device per step."""
    gradient_accumulation_steps: int = Field(1, ge=1)
    """Steps whose gradients are summed before one optimiser update."""
    max_length: int = Field(256, ge=16)
    """Longest tokenised example; longer ones are truncated from the end."""
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    """Fraction of steps spent warming the learning rate up."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay."""
    lora_r: int = Field(16, ge=1)
    """LoRA rank (method=lora)."""
    lora_alpha: int = Field(32, ge=1)
    """LoRA scaling numerator (method=lora)."""
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on LoRA inputs (method=lora)."""
    lora_target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Modules that get adapters (method=lora)."""
    bf16: bool | Literal["auto"] = False
    """Mixed precision: matrix products in bfloat16 under autocast, weights and optimiser in float32. `auto` turns it
    on where the hardware computes bf16 natively: a GPU with bf16, or a CPU with AVX512-BF16 or AMX, where a
    SmolLM2-135M step measured 3x faster than float32; true turns it on anywhere (emulated bf16 on other CPUs is
    slower than float32)."""
    save_steps: int = Field(50, ge=1)
    """Checkpoint every this many optimiser steps (resume picks up the latest)."""
    seed: int = 0
    """Seed for shuffling and initialisation."""
    kd: KDConfig | None = None
    """White-box distillation settings; None trains by plain SFT on the teacher's answers."""
    schedule: Literal["mixed", "qa_first"] = "mixed"
    """Which epochs train which examples: `mixed` trains every example in every epoch; `qa_first`
    (pre-instruction-tuning, Jiang et al. 2024) trains the question/answer examples alone for the first
    `qa_first_epochs` epochs, then passages (documents, fact restatements) and question/answer examples together."""
    qa_first_epochs: int = Field(1, ge=1)
    """Epochs of question/answer examples alone before passages join them (schedule `qa_first`)."""
    excerpt_epochs: int | None = Field(None, ge=1)
    """Epochs, counted from the last, that train the retrieval-aware (RAFT) examples; None: every epoch. They
    hold several excerpts each, so they cost several closed-book examples' time."""

    detach_excerpts: bool = False
    """Run the excerpts of RAFT examples forward without gradient: their keys and values, from the current weights,
    still feed the question and answer, but the backward pass skips them (about half an excerpt example's cost),
    so training adapts how answers read excerpts but not how excerpts are encoded. SFT only."""

    @model_validator(mode="after")
    def _check_schedule(self) -> TrainConfig:
        if self.schedule == "qa_first" and self.qa_first_epochs >= self.epochs:
            raise ValueError(
                f"train.qa_first_epochs ({self.qa_first_epochs}) leaves no epoch for passages within train.epochs "
                f"({self.epochs:g}); lower it or raise train.epochs"
            )
        if self.detach_excerpts and self.kd is not None:
            raise ValueError("train.detach_excerpts works with plain SFT only; drop it or train.kd")
        if self.excerpt_epochs is not None and self.excerpt_epochs > self.epochs:
            raise ValueError(f"train.excerpt_epochs ({self.excerpt_epochs}) exceeds train.epochs ({self.epochs:g})")
        return self


class SignificanceConfig(StrictModel):
    """How systems are compared: paired bootstrap intervals, Wilcoxon signed-rank, Holm correction."""

    alpha: float = Field(0.05, gt=0, lt=1)
    """Family-wise error rate per metric (Holm-adjusted p-values below it are significant)."""
    confidence: float = Field(0.95, gt=0, lt=1)
    """Coverage of the bootstrap confidence intervals."""
    resamples: int = Field(2000, ge=100)
    """Bootstrap resamples."""
    seed: int = 0
    """Seed of the bootstrap draws."""


DEFAULT_ENCODER = "all-minilm-l6-v2"
"""The sentence encoder of dense indexes, ReBase datastores and embedding metrics unless one is named."""

RetrievalMethod = Literal["bm25", "dense", "hybrid"]
"""The ways chunks are searched (`retrieval.method`, `domainkd retrieve --retrieval`); see `RetrievalConfig.method`."""
RetrievalChoice = Literal["none", RetrievalMethod]
"""What a model reads before the question (`serve.retrieval`, `domainkd serve --retrieval`): nothing, or the
chunks a `RetrievalMethod` finds."""


class RetrievalConfig(StrictModel):
    """Search over the data stage's chunks, for RAG strategies and `domainkd serve --retrieval`."""

    method: RetrievalMethod = "hybrid"
    """`bm25` (bm25s, stemmed, English stop words), `dense` (the sentence encoder + FAISS) or `hybrid` (both,
    merged by reciprocal rank fusion)."""
    top_k: int = Field(3, ge=1, le=50)
    """Chunks put in the prompt per question."""
    encoder: str = DEFAULT_ENCODER
    """Local sentence encoder of the dense index (known name or sentence-transformers directory)."""
    rrf_k: int = Field(60, ge=1)
    """Reciprocal rank fusion constant: a chunk at rank r in one list adds 1 / (rrf_k + r)."""
    candidates: int = Field(50, ge=1)
    """Depth of each list fused by `hybrid`."""
    recall_at: list[int] = Field(default_factory=lambda: [1, 3, 5, 10])
    """Cut-offs k of the recall@k report (is the gold chunk among the first k?)."""
    answer_check: float | None = Field(0.5, gt=0, le=1)
    """An answer given from excerpts must have every name and number, and this share of its content words, in
    them, or it becomes the refusal sentence (evaluation and `serve --retrieval` alike); None: no check."""


class ServeConfig(StrictModel):
    """`domainkd serve`: where the trained student listens, what it reads, and the limits on requests.

    The run's config.yaml holds it as the `serve` section; each option given to `domainkd serve` overrides its field.
    """

    # a key mistakenly put in api_key_env stays unprinted
    model_config = ConfigDict(**StrictModel.model_config, hide_input_in_errors=True)

    host: str = "127.0.0.1"
    """Address to bind: localhost unless told otherwise; one that is not loopback should have an API key."""
    port: int = Field(8000, ge=1, le=65535)
    """Port to listen on."""
    model_name: str | None = None
    """Model name clients send; None uses the run's name."""
    api_key_env: str = "DOMAINKD_API_KEY"
    """Environment variable holding the API key every request must carry; unset or empty serves without a key."""
    retrieval: RetrievalChoice = "none"
    """Put the excerpts a method retrieves (with the `retrieval` section's settings) in the prompt, or `none`."""
    top_k: int | None = Field(None, ge=1, le=50)
    """Excerpts per prompt; None uses `retrieval.top_k`."""
    max_concurrency: int = Field(4, ge=1)
    """Requests admitted at once (one generates, the rest wait for the model); more get HTTP 429."""
    max_request_bytes: int = Field(65536, ge=1)
    """Largest request body in bytes; larger ones get HTTP 413."""
    max_tokens_limit: int = Field(512, ge=1)
    """Largest `max_tokens` a request may ask for, and the default when it asks for none."""

    @field_validator("api_key_env")
    @classmethod
    def _check_api_key_env(cls, api_key_env: str) -> str:
        return _env_name(api_key_env, "DOMAINKD_API_KEY")


PROMPT_TEMPLATES = ("plain", "expert", "concise")
"""Named instruction templates of the prompt-crafting strategy (see domainkd.evaluation.systems.TEMPLATES)."""


class StrategyConfig(StrictModel):
    """One way of answering: a model, how its prompt is crafted, and what it reads first."""

    model: str = "base_student"
    """`base_student`, `student` (the distilled one), `teacher`, or any model reference."""
    template: str = "plain"
    """Instruction template: `plain` (the question alone), `expert`, `concise`, or your own text with {question}
    (and optionally {refusal_text})."""
    few_shot: int = Field(0, ge=0, le=16)
    """Worked examples put before the question, the training set's questions most similar to it."""
    chain_of_thought: bool = False
    """Ask for step-by-step reasoning before a line `Answer: ...`; only that line is scored."""
    retrieval: Literal[RetrievalChoice, "gold"] = "none"
    """What the model reads before the question: nothing, retrieved chunks (by method), or `gold`, the
    question's own source document (an oracle upper bound, not a deployable strategy)."""
    top_k: int | None = Field(None, ge=1, le=50)
    """Retrieved chunks in the prompt; None uses `retrieval.top_k`."""
    max_new_tokens: int | None = Field(None, ge=1)
    """Longest answer; None uses `eval.max_new_tokens` (three times that with chain_of_thought)."""

    @field_validator("template")
    @classmethod
    def _check_template(cls, template: str) -> str:
        if template not in PROMPT_TEMPLATES and "{question}" not in template:
            raise ValueError(f"use {', '.join(PROMPT_TEMPLATES)} or a text containing {{question}}")
        return template

    @model_validator(mode="after")
    def _check_template_with_retrieval(self) -> StrategyConfig:
        if self.retrieval != "none" and self.template != "plain":
            raise ValueError(
                "template shapes closed-book prompts only; with retrieval the excerpt prompt is the template, "
                "so set template: plain"
            )
        return self


def _default_strategies() -> dict[str, StrategyConfig]:
    return {
        "base": StrategyConfig(model="base_student"),
        "prompt_crafting": StrategyConfig(model="base_student", template="expert", few_shot=3),
        "rag": StrategyConfig(model="base_student", retrieval="hybrid"),
        "rag_teacher": StrategyConfig(model="teacher", retrieval="hybrid"),
        "distilled": StrategyConfig(model="student"),
        "hybrid": StrategyConfig(model="student", retrieval="hybrid"),
    }


class CompareConfig(StrictModel):
    """`domainkd compare`: every strategy answers the same evaluation questions, scored by the same metrics."""

    strategies: dict[str, StrategyConfig] = Field(default_factory=_default_strategies)
    """Strategy name → its settings; names label the report's rows."""
    few_shot_pool: Path | None = None
    """JSONL of question/answer pairs the few-shot examples come from; None uses the run's teach/train.jsonl."""

    @field_validator("strategies")
    @classmethod
    def _check_strategies(cls, strategies: dict[str, StrategyConfig]) -> dict[str, StrategyConfig]:
        if not strategies:
            raise ValueError("name at least one strategy, e.g. {distilled: {model: student}}")
        return _file_safe(strategies, "strategy name", "files")


class EvalWritingConfig(StrictModel):
    """How `teach` writes held-out questions when the config names no `eval.questions` file."""

    in_scope: int = Field(40, ge=1)
    """Questions on facts of the documents, at most one per chunk until every chunk has one."""
    out_of_scope: int = Field(12, ge=0)
    """Questions the documents do not answer: teacher-written ones on a chunk's topic, then general ones."""
    seed: int = 0
    """Which facts are chosen."""


class EvalConfig(StrictModel):
    """Held-out questions, which systems answer them and which metrics score them."""

    questions: Path | None = None
    """JSONL of held-out questions: question, answer, facts, source, scope (in/out), category; multiple-choice
    questions add `options` (list) and `answer_index` (0-based). A TeleQnA .json/.json.gz file works too.
    None: `teach` has the teacher write them (`eval.writing`) into eval.jsonl in the run directory, for you to
    review and edit; reports label them teacher-written."""
    writing: EvalWritingConfig = Field(default_factory=EvalWritingConfig)
    """Teacher-written held-out questions, used when `questions` is None."""
    contamination_similarity: float | None = Field(0.8, gt=0, le=1)
    """A training question sharing this share (Jaccard) of its content words with an evaluation question is dropped
    from training; None: only one identical to an evaluation question is."""
    systems: list[str] = Field(
        default_factory=lambda: ["base_student", "student", "teacher_closed_book", "teacher_with_context"]
    )
    """Systems to evaluate, by name from the system registry."""
    metrics: list[str] = Field(
        default_factory=lambda: [
            "fact_accuracy", "exact_match", "token_f1", "paper14_no_judge", "refusal_rate", "false_refusal_rate",
            "hallucination_rate",
        ]
    )
    """Metrics to report, by name from the metric registry, or presets (`paper14`, `paper14_no_judge`,
    `behaviour`, `multiple_choice`) that expand to their metrics."""
    encoder: str = DEFAULT_ENCODER
    """Local sentence encoder for BERTScore and embedding cosine (known name or sentence-transformers directory)."""
    judge: TeacherConfig | None = None
    """The LLM judge for the judge_* metrics: any teacher backend (a local model or an OpenAI-compatible endpoint)."""
    significance: SignificanceConfig = Field(default_factory=SignificanceConfig)
    """Confidence intervals and paired tests between systems."""
    max_new_tokens: int = Field(64, ge=1)
    """Longest answer generated per question."""
    batch_size: int = Field(8, ge=1)
    """Questions answered together."""
    limit: int | None = Field(None, ge=1)
    """Evaluate only the first N questions (for quick checks)."""
    train_recall: int = Field(60, ge=0)
    """Training questions each student system is also asked, in their training wording (train-question recall, shown
    beside held-out accuracy to tell memorised wording from knowledge): closed-book systems the questions trained
    closed-book, systems reading excerpts those trained with excerpts; 0: none."""

    @field_validator("systems")
    @classmethod
    def _check_systems(cls, systems: list[str]) -> list[str]:
        from domainkd.evaluation.systems import SYSTEMS

        return _known_names(systems, SYSTEMS, "eval.systems")

    @field_validator("metrics")
    @classmethod
    def _check_metrics(cls, metrics: list[str]) -> list[str]:
        from domainkd.evaluation import METRICS, PRESETS
        from domainkd.evaluation.registry import expand_metric_names

        _known_names(metrics, {**METRICS, **PRESETS}, "eval.metrics")
        return expand_metric_names(metrics)

    @model_validator(mode="after")
    def _check_judge(self) -> EvalConfig:
        judged = [name for name in self.metrics if name.startswith("judge_")]
        if judged and self.judge is None:
            raise ValueError(
                f"eval.metrics includes {', '.join(judged)} but no eval.judge is set; add an eval.judge "
                "section (a teacher backend and model) or drop those metrics"
            )
        return self


class GridConfig(StrictModel):
    """The KD experiment grid of `domainkd grid`: teacher SFT × student SFT × KD loss × teacher vocabulary."""

    teachers: dict[str, str]
    """Label → KD teacher model reference, e.g. {same_vocab: smollm2-135m-instruct, different_vocab: qwen2.5-…}."""
    teacher_sft: list[bool] = Field(default_factory=lambda: [False, True])
    """Distil from the teacher as it is (false) and/or after fine-tuning it on the training set (true)."""
    student_sft: list[bool] = Field(default_factory=lambda: [False, True])
    """Distil into the student as it is and/or after fine-tuning it on the training set first."""
    losses: list[Literal["vanilla", "dskd"]] = Field(default_factory=lambda: ["vanilla", "dskd"])
    """KD objectives per cell; `dskd` uses cross-model attention for a teacher with another tokenizer."""
    vanilla_across_tokenizers: Literal["mined", "uld"] = "mined"
    """What a `vanilla` cell uses when the teacher's tokenizer differs (logit KD needs shared token ids)."""
    student_layers: int | None = Field(None, ge=1)
    """Keep only the student's first N decoder layers (a smaller student with the same vocabulary)."""
    teacher_sft_train: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the `train` section for fine-tuning the teachers, e.g. {method: lora, epochs: 1}."""

    @field_validator("teachers")
    @classmethod
    def _check_teachers(cls, teachers: dict[str, str]) -> dict[str, str]:
        if not teachers:
            raise ValueError("name at least one teacher, e.g. {same_vocab: smollm2-135m-instruct}")
        return _file_safe(teachers, "teacher label", "directories")

    @field_validator("teacher_sft", "student_sft", "losses")
    @classmethod
    def _check_nonempty(cls, values: list[Any]) -> list[Any]:
        if not values:
            raise ValueError("list at least one value")
        return list(dict.fromkeys(values))

    @field_validator("teacher_sft_train")
    @classmethod
    def _check_teacher_sft_train(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        TrainConfig.model_validate({**overrides, "kd": None})
        return overrides


class DomainConfig(StrictModel):
    """What the documents are and who asks about them; every teacher, judge and answer prompt says so."""

    documents: str = Field("the documents", min_length=1)
    """The documents as a noun phrase that fits "questions about ___", e.g. "biomedical abstracts" or
    "the Orsolva Institute staff handbook"."""
    askers: str = Field("readers", min_length=1)
    """Who asks, as a plural noun phrase that fits "questions for ___", e.g. "clinicians" or "employees"."""


class RunConfig(StrictModel):
    """One domainkd run: documents in, an evaluated specialist out."""

    name: str = "run"
    """Short name of the run, used in reports."""
    run_dir: Path | None = None
    """Where every stage writes; default runs/<name> under the current directory."""
    domain: DomainConfig = Field(default_factory=DomainConfig)
    """What the documents are and who asks; the prompts and the defaults below are worded from it."""
    system_prompt: str = ""
    """System message used for the student at training and evaluation time alike (empty: "You are a helpful
    assistant that answers questions about <domain.documents>.")."""
    refusal_text: str = ""
    """What the student is taught to say for questions outside its knowledge (empty: "I don't know; that is
    not covered in <domain.documents>.")."""
    student: StudentConfig = Field(default_factory=StudentConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    """Search over the documents' chunks (RAG strategies, `domainkd serve --retrieval`)."""
    serve: ServeConfig = Field(default_factory=ServeConfig)
    """How `domainkd serve` serves the trained student; its command-line options override these."""
    compare: CompareConfig = Field(default_factory=CompareConfig)
    """The strategies `domainkd compare` puts side by side."""
    grid: GridConfig | None = None
    """The experiment grid; read only by `domainkd grid`."""

    @model_validator(mode="after")
    def _word_from_domain(self) -> RunConfig:
        if not self.system_prompt.strip():
            self.system_prompt = f"You are a helpful assistant that answers questions about {self.domain.documents}."
        if not self.refusal_text.strip():
            self.refusal_text = f"I don't know; that is not covered in {self.domain.documents}."
        return self

    @property
    def output_dir(self) -> Path:
        """The run directory every stage reads from and writes to."""
        return self.run_dir if self.run_dir is not None else Path("runs") / self.name

    @property
    def eval_questions(self) -> Path:
        """The held-out questions: the `eval.questions` file, or the one `teach` writes into the run directory."""
        from domainkd.paths import RunPaths

        return self.eval.questions if self.eval.questions is not None else RunPaths(self.output_dir).written_eval

    @property
    def teacher_writes_eval(self) -> bool:
        """Whether the held-out questions are the teacher's (the config names no `eval.questions` file)."""
        return self.eval.questions is None


def _file_safe(named: dict[str, Any], what: str, names: str) -> dict[str, Any]:
    """``named`` unchanged when every key can name a file; else one sentence naming the bad key."""
    for key in named:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise ValueError(f"{what} {key!r} names {names}; use letters, digits, '_', '.' or '-'")
    return named


def _env_name(name: str, example: str) -> str:
    """``name`` when it can name an environment variable; else one sentence that never echoes it (it may be a key)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name an environment variable such as {example} (letters, digits, _), not the key")
    return name


def _known_names(names: list[str], registry: dict[str, Any], key: str) -> list[str]:
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise ValueError(f"{key} has unknown name {unknown[0]!r}; choose from {', '.join(sorted(registry))}")
    return names


class DuplicateKeyError(yaml.YAMLError):
    """A mapping sets one key twice (YAML says it is one key; PyYAML keeps the last value silently)."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that rejects a key repeated in one mapping (`DuplicateKeyError`: "'key' (line N)")."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKeyError(f"{key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config file into a validated :class:`RunConfig`.

    Args:
        path: YAML file.
        overrides: Values merged over the file's, e.g. ``{"train": {"epochs": 1}}``.

    Raises:
        DomainKDError: missing file, malformed YAML, unknown key or bad value (one sentence).
    """
    path = Path(path)
    if not path.is_file():
        raise DomainKDError(f"config file {path} does not exist; pass the path of a YAML config such as examples/handbook/config.yaml.")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader) or {}
    except DuplicateKeyError as error:
        raise DomainKDError(f"config file {path} sets {error} twice; keep one of the two.") from None
    except UnicodeDecodeError:
        raise DomainKDError(f"config file {path} is not UTF-8 text; save it as UTF-8.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise DomainKDError(f"config file {path} is not valid YAML{where}; fix the syntax there.") from None
    if not isinstance(raw, dict):
        raise DomainKDError(f"config file {path} must hold a mapping of sections (student, teacher, data, ...).")
    raw = deep_merge(raw, overrides or {})
    config = config_from_dict(raw, source=str(path))
    base = path.parent.resolve()
    if config.data.documents is not None:
        config.data.documents = _resolve(base, config.data.documents)
    config.data.records = [_resolve(base, path) for path in config.data.records]
    config.data.qa_sets = [_resolve(base, path) for path in config.data.qa_sets]
    if config.eval.questions is not None:
        config.eval.questions = _resolve(base, config.eval.questions)
    if config.compare.few_shot_pool is not None:
        config.compare.few_shot_pool = _resolve(base, config.compare.few_shot_pool)
    return config


def config_from_dict(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a plain dict as a :class:`RunConfig`, turning pydantic errors into one sentence."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        raise DomainKDError(_one_sentence(error, source)) from None


def _one_sentence(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key {key!r}; remove it or check its spelling against the documented fields."
    message = first["msg"].removeprefix("Value error, ")
    return f"{source}: bad value for {key!r}: {message}."


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, mapping by mapping; ``extra``'s other values win."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def dump_config(config: RunConfig, path: Path) -> None:
    """Write the resolved config as YAML (paths as strings) so a run records what it used."""
    from domainkd.io import atomic_path

    from domainkd.teachers.http import redacted_url

    data = config.model_dump(mode="json")
    data["teacher"]["base_url"] = redacted_url(data["teacher"]["base_url"])  # a key inside the URL stays out of the run folder
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
