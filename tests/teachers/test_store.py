import json
import sqlite3

import pytest

from domainkd.teachers import AnswerStore, Reply, answer_key, ask, failure_kind


class CountingTeacher:
    """Answers a prompt with its upper-case text; fails prompts that start with "fail:" with that reason."""

    identity = "fake:echo"
    batch_size = 2

    def __init__(self, replies=None):
        self.seen = []
        self.replies = replies or {}  # prompt text -> answer text to give instead of the upper-case echo

    def settings(self):
        return {"max_new_tokens": 8}

    def load(self):
        self.loaded = True

    def generate(self, conversations, max_new_tokens=None, expect_json=False):
        self.limits = getattr(self, "limits", []) + [max_new_tokens]
        self.seen += [conversation[-1]["content"] for conversation in conversations]
        return [self._reply(conversation[-1]["content"]) for conversation in conversations]

    def _reply(self, prompt):
        if prompt.startswith("fail:") and prompt not in self.replies:
            return Reply(None, error=prompt.removeprefix("fail:"), prompt_tokens=len(prompt))
        return Reply(self.replies.get(prompt, prompt.upper()), prompt_tokens=len(prompt), completion_tokens=3)


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
        def generate(self, conversations, max_new_tokens=None, expect_json=False):
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


def test_a_streaming_teacher_gets_every_request_at_once_and_each_reply_is_stored_as_it_ends(tmp_path):
    class Streams(CountingTeacher):
        """Ends the requests in reverse order; dies after ``lives`` replies when set."""

        def __init__(self, lives=None):
            super().__init__()
            self.calls, self.lives = [], lives

        def generate_stream(self, conversations, max_new_tokens=None, expect_json=False):
            self.calls.append(len(conversations))
            for index in reversed(range(len(conversations))):
                if self.lives is not None and len(self.seen) >= self.lives:
                    raise KeyboardInterrupt
                self.seen.append(conversations[index][-1]["content"])
                reply = self._reply(conversations[index][-1]["content"])
                yield index, Reply('{"a": 1} trailing') if expect_json else reply

    texts = ("aaa", "bb", "c", "d", "fail:boom")
    with AnswerStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(KeyboardInterrupt):
            ask(Streams(lives=3), _conversations(*texts), store)
        assert store.count() == 3  # each reply was committed when it ended, not at the end of a batch
        teacher = Streams()
        assert ask(teacher, _conversations(*texts), store) == ["AAA", "BB", "C", "D", ""]
        assert teacher.calls == [2]  # the two left, in one call
        assert ask(Streams(), _conversations("e"), store, expect_json=True) == ['{"a": 1}']  # repaired as with generate


def test_a_streaming_teacher_that_skips_a_request_is_an_error(tmp_path):
    class Forgets(CountingTeacher):
        def generate_stream(self, conversations, max_new_tokens=None, expect_json=False):
            yield 0, self._reply(conversations[0][-1]["content"])

    with AnswerStore(tmp_path / "s.sqlite") as store, pytest.raises(RuntimeError, match="left 1 of 2 conversations unanswered"):
        ask(Forgets(), _conversations("a", "b"), store)


def test_a_tighter_limit_is_its_own_request(tmp_path):
    teacher = CountingTeacher()
    with AnswerStore(tmp_path / "s.sqlite") as store:
        ask(teacher, _conversations("a"), store)
        ask(teacher, _conversations("a"), store, max_new_tokens=4)
        ask(teacher, _conversations("a"), store, max_new_tokens=100)  # capped at the configured 8: stored
    assert teacher.limits == [8, 4]


def _rows(path):
    with sqlite3.connect(path) as connection:
        return {row[0]: row[1:] for row in connection.execute("SELECT prompt, answer, error FROM answers")}


def test_a_failed_request_is_stored_with_its_reason_and_asked_again_next_time(tmp_path):
    flaky = CountingTeacher()
    prompts = _conversations("a", "fail:HTTP 500: upstream down", "b")
    with AnswerStore(tmp_path / "s.sqlite") as store:
        assert ask(flaky, prompts, store) == ["A", "", "B"]
        stored = _rows(tmp_path / "s.sqlite")
        assert stored[json.dumps(prompts[1])] == (None, "HTTP 500: upstream down")
        assert store.stats()["failed_by_reason"] == {"HTTP 500": 1}

        healthy = CountingTeacher(replies={"fail:HTTP 500: upstream down": "RECOVERED"})
        assert ask(healthy, prompts, store) == ["A", "RECOVERED", "B"]
        assert healthy.seen == ["fail:HTTP 500: upstream down"]  # answered prompts are never asked again
        assert store.stats()["failed"] == 0


def test_stats_total_answers_failures_and_tokens(tmp_path):
    teacher = CountingTeacher()
    with AnswerStore(tmp_path / "s.sqlite") as store:
        empty = store.stats()
        prompts = ["ab", "cde", "fail:timeout: slow", "fail:timeout: slower", "fail:HTTP 429: busy"]
        ask(teacher, _conversations(*prompts), store)
        stats = store.stats()
    assert empty == {"answered": 0, "failed": 0, "failed_by_reason": {}, "prompt_tokens": 0, "completion_tokens": 0}
    assert stats["answered"] == 2 and stats["failed"] == 3
    assert stats["failed_by_reason"] == {"timeout": 2, "HTTP 429": 1}  # most frequent first
    assert list(stats["failed_by_reason"]) == ["timeout", "HTTP 429"]
    assert stats["prompt_tokens"] == sum(len(prompt) for prompt in prompts)  # failed requests' tokens count too
    assert stats["completion_tokens"] == 3 + 3  # failed replies spent none here


def test_stats_of_one_teacher_leave_out_another_teachers_answers_in_the_same_store(tmp_path):
    other = CountingTeacher()
    other.identity = "fake:other"
    with AnswerStore(tmp_path / "s.sqlite") as store:  # e.g. a store copied from a run with another teacher
        ask(other, _conversations("a", "b", "fail:timeout: slow"), store)
        ask(CountingTeacher(), _conversations("cd"), store)
        mine, theirs, every = store.stats("fake:echo"), store.stats("fake:other"), store.stats()
    assert (mine["answered"], mine["failed"], mine["prompt_tokens"]) == (1, 0, 2)
    assert (theirs["answered"], theirs["failed"], theirs["failed_by_reason"]) == (2, 1, {"timeout": 1})
    assert every["answered"] == 3 and every["prompt_tokens"] == mine["prompt_tokens"] + theirs["prompt_tokens"]


def test_expect_json_stores_repaired_json_and_fails_what_cannot_be_repaired(tmp_path):
    fenced = 'Here:\n```json\n{"question": "Why?", "answer": "Because",}\n```'
    teacher = CountingTeacher(replies={"q1": fenced, "q2": "no object"})
    with AnswerStore(tmp_path / "s.sqlite") as store:
        answers = ask(teacher, _conversations("q1", "q2"), store, expect_json=True)
        assert json.loads(answers[0]) == {"question": "Why?", "answer": "Because"}
        assert answers[0] == json.dumps({"question": "Why?", "answer": "Because"})  # stored canonical
        assert answers[1] == ""
        failed = _rows(tmp_path / "s.sqlite")[json.dumps(_conversations("q2")[0])]
        assert failed == (None, "malformed JSON: no '{' in the answer")
        assert store.stats()["failed_by_reason"] == {"malformed JSON": 1}
        teacher.seen.clear()
        assert ask(teacher, _conversations("q1"), store) == [fenced]  # the plain-text request has its own key
        assert teacher.seen == ["q1"]


def test_expect_json_is_part_of_the_key_only_when_set(tmp_path):
    teacher = CountingTeacher(replies={"q": '{"a": 1}'})
    with AnswerStore(tmp_path / "s.sqlite") as store:
        ask(teacher, _conversations("q"), store)
        ask(teacher, _conversations("q"), store, expect_json=True)
        keys = set(store.get_many([answer_key("fake:echo", _conversations("q")[0], {"max_new_tokens": 8})]))
    assert len(keys) == 1, "a plain request keeps the key it had before expect_json existed"
    assert teacher.seen == ["q", "q"]


def test_a_teacher_giving_the_wrong_number_of_replies_is_an_error(tmp_path):
    class Short(CountingTeacher):
        def generate(self, conversations, max_new_tokens=None, expect_json=False):
            return super().generate(conversations[:1], max_new_tokens)

    with AnswerStore(tmp_path / "s.sqlite") as store, pytest.raises(RuntimeError, match="gave 1 replies to 2"):
        ask(Short(), _conversations("a", "b"), store)


def test_a_reply_holds_text_or_error_never_both_nor_neither():
    assert Reply("").error is None
    with pytest.raises(ValueError):
        Reply(None)
    with pytest.raises(ValueError):
        Reply("text", error="timeout: slow")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("HTTP 500: upstream down", "HTTP 500"),
        ("malformed JSON: no '{'", "malformed JSON"),
        ("odd", "odd"),
        ("", "unknown"),
    ],
)
def test_failure_kind_is_the_text_before_the_first_colon(error, kind):
    assert failure_kind(error) == kind
