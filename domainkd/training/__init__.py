"""Training the student: response-only fine-tuning on the teacher's answers (full or LoRA)."""

from domainkd.training.sft import train

__all__ = ["train"]
