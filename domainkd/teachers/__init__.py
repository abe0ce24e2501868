"""Teachers: one interface, backends by name, every answer kept in a resumable SQLite store."""

from domainkd.teachers.base import TEACHERS, Reply, Teacher, ask, build_teacher, known_teachers, register_teacher
from domainkd.teachers.json_output import parse_json_object
from domainkd.teachers.store import AnswerStore, answer_key, failure_kind

__all__ = [
    "TEACHERS",
    "AnswerStore",
    "Reply",
    "Teacher",
    "answer_key",
    "ask",
    "build_teacher",
    "failure_kind",
    "known_teachers",
    "parse_json_object",
    "register_teacher",
]
