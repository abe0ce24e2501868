import json
import sqlite3

from domainkd.config import TeacherConfig
from domainkd.models import load_tokenizer, render_prompt
from domainkd.teachers import AnswerStore, ask, build_teacher


def test_the_hf_teacher_reports_prompt_and_completion_tokens(tiny_model, tmp_path):
    teacher = build_teacher(TeacherConfig(model=str(tiny_model), batch_size=2, max_new_tokens=6))
    conversations = [[{"role": "user", "content": text}] for text in ("How many days of leave?", "Who issues permits?")]
    with AnswerStore(tmp_path / "s.sqlite") as store:
        answers = ask(teacher, conversations, store)
        stats = store.stats()
    tokenizer = load_tokenizer(tiny_model)

    def count(text):
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    with sqlite3.connect(tmp_path / "s.sqlite") as connection:
        stored = {json.loads(prompt)[0]["content"]: tokens for prompt, tokens in connection.execute(
            "SELECT prompt, prompt_tokens FROM answers"
        )}
    assert stored == {c[0]["content"]: count(render_prompt(tokenizer, c)) for c in conversations}
    assert stats["prompt_tokens"] == sum(stored.values())
    assert stats["completion_tokens"] == sum(count(answer) for answer in answers) <= 2 * 6
