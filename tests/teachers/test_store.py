from domainkd.teachers import AnswerStore, answer_key, ask


class CountingTeacher:
    identity = "fake:echo"
    batch_size = 2

    def __init__(self):
        self.seen = []

    def settings(self):
        return {"max_new_tokens": 8}

    def load(self):
        self.loaded = True

    def generate(self, conversations, max_new_tokens=None):
        self.limits = getattr(self, "limits", []) + [max_new_tokens]
        self.seen += [conversation[-1]["content"] for conversation in conversations]
        return [conversation[-1]["content"].upper() for conversation in conversations]


def _conversations(*texts):
    return [[{"role": "user", "content": text}] for text in texts]


def test_key_depends_on_teacher_prompt_and_settings():
    prompt = _conversations("a")[0]
    base = answer_key("t", prompt, {"x": 1})
    assert base == answer_key("t", prompt, {"x": 1})
    assert base != answer_key("t2", prompt, {"x": 1})
    assert base != answer_key("t", prompt, {"x": 2})
    assert base != answer_key("t", _conversations("b")[0], {"x": 1})


def test_ask_answers_in_order_and_never_twice(tmp_path):
    teacher = CountingTeacher()
    with AnswerStore(tmp_path / "s.sqlite") as store:
        assert ask(teacher, _conversations("a", "b", "a"), store) == ["A", "B", "A"]
        assert sorted(teacher.seen) == ["a", "b"]  # the duplicate prompt is generated once
    with AnswerStore(tmp_path / "s.sqlite") as store:  # a new process would reopen the file
        assert ask(teacher, _conversations("c", "a", "b"), store) == ["C", "A", "B"]
        assert store.count() == 3
    assert sorted(teacher.seen) == ["a", "b", "c"]


def test_every_batch_is_committed_before_the_next(tmp_path):
    class Dies(CountingTeacher):
        def generate(self, conversations, max_new_tokens=None):
            if len(self.seen) >= 2:
                raise KeyboardInterrupt
            return super().generate(conversations, max_new_tokens)

    with AnswerStore(tmp_path / "s.sqlite") as store:
        try:
            ask(Dies(), _conversations("aaa", "bb", "c", "d"), store)
        except KeyboardInterrupt:
            pass
    with AnswerStore(tmp_path / "s.sqlite") as store:
        assert store.count() == 2  # the first batch survived
        fresh = CountingTeacher()
        ask(fresh, _conversations("aaa", "bb", "c", "d"), store)
        assert sorted(fresh.seen) == ["c", "d"]


def test_a_tighter_limit_is_its_own_request(tmp_path):
    teacher = CountingTeacher()
    with AnswerStore(tmp_path / "s.sqlite") as store:
        ask(teacher, _conversations("a"), store)
        ask(teacher, _conversations("a"), store, max_new_tokens=4)
        ask(teacher, _conversations("a"), store, max_new_tokens=100)  # capped at the configured 8: stored
    assert teacher.limits == [8, 4]
