"""Teachers: one interface, backends by name, every answer kept in a resumable SQLite store."""

from domainkd.teachers.base import TEACHERS, Teacher, ask, build_teacher, register_teacher
from domainkd.teachers.store import AnswerStore, answer_key

__all__ = ["TEACHERS", "AnswerStore", "Teacher", "answer_key", "ask", "build_teacher", "register_teacher"]
