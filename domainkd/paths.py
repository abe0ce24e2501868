"""The run directory: where each stage writes and where the next stage reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    """Every file a run produces, derived from one root directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def written_eval(self) -> Path:
        """Held-out questions the teacher wrote (when the config names no ``eval.questions``)."""
        return self.root / "eval.jsonl"

    @property
    def chunks(self) -> Path:
        return self.root / "data" / "chunks.jsonl"

    @property
    def data_summary(self) -> Path:
        return self.root / "data" / "summary.json"

    @property
    def answer_store(self) -> Path:
        return self.root / "teacher_answers.sqlite"

    @property
    def train_set(self) -> Path:
        return self.root / "teach" / "train.jsonl"

    @property
    def rejected(self) -> Path:
        return self.root / "teach" / "rejected.jsonl"

    @property
    def teach_summary(self) -> Path:
        return self.root / "teach" / "summary.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "train" / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.root / "train" / "adapter"

    @property
    def model(self) -> Path:
        return self.root / "train" / "model"

    @property
    def teacher_topk(self) -> Path:
        return self.root / "train" / "teacher_topk"

    @property
    def train_inputs(self) -> Path:
        return self.root / "train" / "inputs.json"

    @property
    def train_summary(self) -> Path:
        return self.root / "train" / "summary.json"

    @property
    def retrieval_index(self) -> Path:
        return self.root / "retrieval"

    def predictions(self, system: str, stage: str = "eval") -> Path:
        return self.root / stage / f"predictions-{system}.jsonl"

    @property
    def metrics(self) -> Path:
        return self.stage_metrics("eval")

    def stage_metrics(self, stage: str) -> Path:
        return self.root / stage / "metrics.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"
