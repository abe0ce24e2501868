"""`domainkd serve`: the real server (uvicorn in a thread) on a tiny model, driven by the official OpenAI client."""

import json
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest
import torch
import uvicorn
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from domainkd.cli import app as cli_app
from domainkd.config import ServeConfig
from domainkd.errors import DomainKDError
from domainkd.evaluation.systems import excerpt_prompt
from domainkd.models import load_causal_lm, render_prompt
from domainkd.paths import RunPaths
from domainkd.serving import ServerSettings, app_for_run, create_app
from domainkd.serving.completion import Retrieval, streamable_prefix
from domainkd.sources import Chunk

NAME = "tiny-run"
SYSTEM = "You answer questions about the staff handbook."
KEY = "sk-test-SENTINEL-0123456789"
QUESTION = "Who hands out parking permits?"


@pytest.fixture(scope="module")
def student(tiny_teacher):
    """A tiny model whose random weights are sharp enough to write varied greedy text (model, tokenizer)."""
    return load_causal_lm(tiny_teacher)


@contextmanager
def serving(app):
    """Run ``app`` with uvicorn in a thread on a pre-bound free port; yield its /v1 URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections queue here until the server loop accepts them: no start-up wait needed
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _app(model, tokenizer, retrieval=None, **settings):
    return create_app(model, tokenizer, ServerSettings(model_name=NAME, system_prompt=SYSTEM, **settings), retrieval)


@pytest.fixture(scope="module")
def base_url(student):
    with serving(_app(*student, max_concurrency=8, max_request_bytes=4096, max_tokens_limit=64)) as url:
        yield url


@pytest.fixture()
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=30)


def greedy(student, messages, max_new_tokens):
    """(text, prompt tokens, completion tokens) of a plain greedy decode, without the server's code."""
    model, tokenizer = student
    ids = torch.tensor([tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                do_sample=False, top_k=None, pad_token_id=tokenizer.pad_token_id)
    new = output[0, ids.shape[1]:].tolist()
    return tokenizer.decode(new, skip_special_tokens=True), ids.shape[1], len(new)


def ask(client, content=QUESTION, max_tokens=12, **options):
    return client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": content}], max_tokens=max_tokens, **options)


def test_health_and_model_listing(client, base_url):
    assert [model.id for model in client.models.list()] == [NAME]
    assert client.models.retrieve(NAME).owned_by == "domainkd"
    assert httpx.get(base_url.removesuffix("/v1") + "/health").json() == {"status": "ok"}


def test_completion_is_the_greedy_decode_under_the_run_system_prompt(client, student):
    text, prompt_tokens, completion_tokens = greedy(student, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}], 12)
    response = ask(client)
    assert response.object == "chat.completion" and response.model == NAME
    assert response.choices[0].message.content == text and text.strip()
    assert response.choices[0].finish_reason == ("length" if completion_tokens == 12 else "stop")
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (prompt_tokens, completion_tokens)
    assert response.usage.total_tokens == prompt_tokens + completion_tokens

    own = [{"role": "system", "content": "Reply tersely."}, {"role": "user", "content": QUESTION}]
    text, prompt_tokens, _ = greedy(student, own, 12)
    response = client.chat.completions.create(model=NAME, messages=own, max_tokens=12)
    assert response.choices[0].message.content == text and response.usage.prompt_tokens == prompt_tokens


def test_sampling_with_a_seed_is_reproducible(client):
    first, second = (ask(client, max_tokens=16, temperature=1.5, top_p=0.95, seed=7).choices[0].message.content for _ in range(2))
    assert first == second
    assert first != ask(client, max_tokens=16).choices[0].message.content, "sampled, not greedy"


def test_text_parts_are_joined_and_other_parts_refused(client, student):
    parts = [{"type": "text", "text": "Who hands out"}, {"type": "text", "text": "parking permits?"}]
    response = ask(client, content=parts)
    expected = greedy(student, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Who hands out\nparking permits?"}], 12)
    assert response.choices[0].message.content == expected[0]
    with pytest.raises(openai.BadRequestError, match="image_url"):
        ask(client, content=[{"type": "image_url", "image_url": {"url": "http://example.org/a.png"}}])


def _stream(client, **options):
    chunks = list(ask(client, stream=True, **options))
    pieces = [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]
    return chunks, "".join(pieces)


def test_streamed_pieces_concatenate_to_the_completion(client):
    expected = ask(client, max_tokens=24)
    chunks, streamed = _stream(client, max_tokens=24, stream_options={"include_usage": True})
    assert streamed == expected.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.object == "chat.completion.chunk" and chunk.id == chunks[0].id for chunk in chunks)
    assert sum(1 for chunk in chunks if chunk.choices and chunk.choices[0].delta.content) >= 2, "text came in pieces"
    finals = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finals == [expected.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == expected.usage.completion_tokens


def test_stop_strings_cut_the_answer_streamed_or_not(client):
    full = ask(client, max_tokens=24).choices[0].message.content
    start = next(index for index in range(3, len(full) - 2) if full[index : index + 2].isascii() and full[index : index + 2].strip())
    stop = full[start : start + 2]
    expected = full[: full.find(stop)]
    response = ask(client, max_tokens=24, stop=[stop, "never-there"])
    assert response.choices[0].message.content == expected
    assert response.choices[0].finish_reason == "stop"
    chunks, streamed = _stream(client, max_tokens=24, stop=stop)
    assert streamed == expected
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason] == ["stop"]


def test_the_streamable_prefix_holds_back_a_possible_stop_string():
    assert streamable_prefix("The answer is 2", ["2 days"]) == "The answer is "
    assert streamable_prefix("The answer is 2 days", ["2 days"]) == "The answer is "
    assert streamable_prefix("The answer is 3", ["2 days"]) == "The answer is 3"
    assert streamable_prefix("abc", []) == "abc"


@pytest.mark.parametrize(
    ("request_options", "fragment"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "hi"}]}, "role"),
        ({"messages": [{"role": "user", "content": 5}]}, "content must be a string"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}, "last message must come from the user"),
        ({"n": 2}, "leave n at 1"),
        ({"max_tokens": 65}, "over this server's limit of 64"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 1000}, "over this server's limit"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop takes at most 4"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "word " * 700}]}, "fills the model's context of 512"),
    ],
)
def test_malformed_requests_get_400_with_one_sentence(client, request_options, fragment):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **request_options}
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=NAME, **body)
    error = raised.value.body
    assert fragment in error["message"] and error["type"] == "invalid_request_error"
    assert error["message"].endswith(".") and "\n" not in error["message"] and set(error) == {"message", "type", "param", "code"}


def test_raw_http_errors_keep_the_openai_error_shape(base_url):
    chat = f"{base_url}/chat/completions"
    good = {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    cases = [
        (httpx.post(chat, content=b"{not json", headers={"content-type": "application/json"}), 400, "not valid JSON"),
        (httpx.post(chat, content=b"[1, 2]", headers={"content-type": "application/json"}), 400, "JSON object"),
        (httpx.post(chat, content=json.dumps(good), headers={"content-type": "text/plain"}), 400, "Content-Type: application/json"),
        (httpx.post(chat, json={"model": NAME}), 400, "lacks `messages`"),
        (httpx.post(chat, json={**good, "padding": "x" * 5000}), 413, "over 4096 bytes"),
        (httpx.post(chat, content=iter([json.dumps(good).encode(), b" " * 5000]), headers={"content-type": "application/json"}), 413, "over 4096 bytes"),
        (httpx.get(f"{base_url}/nowhere"), 404, "no route /v1/nowhere"),
        (httpx.get(chat), 405, "GET is not allowed on /v1/chat/completions; use POST."),
    ]
    for response, status, fragment in cases:
        assert response.status_code == status, (fragment, response.text)
        error = response.json()["error"]
        assert fragment in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert "content-length" not in cases[5][0].request.headers, "the streamed body is measured as it is read"
    assert httpx.post(chat, json=good).status_code == 200, "the server is still fine"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError, match="'gpt-5' is not served here"):
        client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}], max_tokens=2)


def test_an_api_key_is_required_when_set_and_never_echoed(student):
    with serving(_app(*student, api_key=KEY)) as url:
        for wrong in ("sk-wrong", KEY + "0", KEY[:-1]):
            client = openai.OpenAI(base_url=url, api_key=wrong, max_retries=0)
            with pytest.raises(openai.AuthenticationError) as raised:
                ask(client, max_tokens=2)
            assert KEY not in json.dumps(raised.value.body) and "Bearer" in raised.value.body["message"]
            with pytest.raises(openai.AuthenticationError):
                client.models.list()
        assert httpx.post(f"{url}/chat/completions", json={}).status_code == 401, "no Authorization header at all"
        assert httpx.get(url.removesuffix("/v1") + "/health").status_code == 200
        right = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
        assert ask(right, max_tokens=2).choices[0].message.content is not None


def test_concurrent_clients_all_get_their_own_answer(client, student):
    questions = [f"Question {number}: when does the car park open?" for number in range(6)]
    answers: dict[int, str] = {}

    def worker(index):
        answers[index] = ask(client, content=questions[index], max_tokens=8).choices[0].message.content

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for index, question in enumerate(questions):
        assert answers[index] == greedy(student, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}], 8)[0]


class GatedModel:
    """The model, but ``generate`` waits for ``gate`` (so a test decides when a generation may finish)."""

    def __init__(self, model):
        self.model, self.entered, self.gate = model, threading.Event(), threading.Event()

    def generate(self, **kwargs):
        self.entered.set()
        assert self.gate.wait(timeout=30)
        return self.model.generate(**kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)


def _until(condition, timeout_s=120.0):  # a condition; generous so a loaded machine passes
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_requests_over_the_concurrency_limit_get_429_and_the_admitted_finish(student):
    model, tokenizer = student
    gated = GatedModel(model)
    app = _app(gated, tokenizer, max_concurrency=2)
    with serving(app) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)
        results: dict[str, str] = {}
        questions = {"first": "When does the car park open?", "second": "Who issues permits?"}

        def worker(label):
            results[label] = ask(client, content=questions[label], max_tokens=6).choices[0].message.content

        first = threading.Thread(target=worker, args=("first",))
        first.start()
        assert gated.entered.wait(timeout=120)  # generating, holding the model
        second = threading.Thread(target=worker, args=("second",))
        second.start()
        _until(lambda: app.state.gate.admitted == 2)  # admitted, waiting for the model lock
        for _ in range(3):
            with pytest.raises(openai.RateLimitError) as raised:
                ask(client, max_tokens=2)
            assert raised.value.response.headers["retry-after"] == "1"
            assert raised.value.body["type"] == "rate_limit_error"
        gated.gate.set()
        first.join(timeout=30)
        second.join(timeout=30)
        for label, question in questions.items():
            assert results[label] == greedy(student, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}], 6)[0]
        assert app.state.gate.admitted == 0
        assert ask(client, max_tokens=2).choices[0].finish_reason in {"stop", "length"}


def test_a_client_leaving_a_stream_frees_its_slot(student):
    app = _app(*student, max_concurrency=1, max_tokens_limit=512)
    with serving(app) as url:
        with httpx.stream("POST", f"{url}/chat/completions", json={
            "model": NAME, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 512, "stream": True,
        }) as response:
            first_line = next(response.iter_lines())
            assert first_line.startswith("data: ") and '"role": "assistant"' in first_line
        _until(lambda: app.state.gate.admitted == 0)
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        assert ask(client, max_tokens=2).choices[0].message.content is not None


class FailingModel(GatedModel):
    """The model, but generation fails with an internal message no client should see."""

    def generate(self, **kwargs):
        raise RuntimeError("CUDA exploded at /secret/path.py line 42")


def test_a_generation_failure_is_a_500_without_internals(student):
    model, tokenizer = student
    with serving(_app(FailingModel(model), tokenizer)) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        with pytest.raises(openai.InternalServerError) as raised:
            ask(client)
        assert raised.value.status_code == 500 and "secret" not in raised.value.response.text
        assert raised.value.body["message"] == "generation failed on the server; see its log."
        with pytest.raises(openai.APIError, match="generation failed on the server") as streamed:
            list(ask(client, stream=True))
        assert "secret" not in str(streamed.value.body)
        with pytest.raises(openai.InternalServerError):
            ask(client)  # the lock and the slot were released


class RecordingModel(GatedModel):
    """The model, remembering the prompt of each generation."""

    def __init__(self, model, tokenizer):
        super().__init__(model)
        self.tokenizer, self.prompts = tokenizer, []
        self.gate.set()

    def generate(self, **kwargs):
        self.prompts.append(self.tokenizer.decode(kwargs["input_ids"][0]))
        return super().generate(**kwargs)


CHUNKS = [
    Chunk("c-parking", "02-parking.md", "Parking", "Permits cost 85 euros a year and are issued by Tomas Brenner.", 0, 60, 14),
    Chunk("c-leave", "01-leave.md", "Annual Leave", "Full-time staff receive 27 days of annual leave.", 0, 48, 11),
]


class FakeRetriever:
    """Returns the parking chunk, then the leave chunk, for any question."""

    def __init__(self):
        self.queries = []

    def search(self, queries, top_k):
        self.queries.append((queries, top_k))
        return [[SimpleNamespace(chunk=chunk, score=1.0 / rank, rank=rank) for rank, chunk in enumerate(CHUNKS[:top_k], 1)]]


def test_retrieval_puts_the_excerpts_in_the_last_user_turn_and_returns_sources(student):
    model, tokenizer = student
    recording, retriever = RecordingModel(model, tokenizer), FakeRetriever()
    retrieval = Retrieval(retriever, top_k=1, refusal_text="I don't know.")
    with serving(_app(recording, tokenizer, retrieval=retrieval)) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        response = ask(client, max_tokens=4)
        chunks = list(ask(client, max_tokens=4, stream=True))
    expected = render_prompt(tokenizer, [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": excerpt_prompt(QUESTION, CHUNKS[:1], "I don't know.")},
    ])
    assert recording.prompts == [expected, expected]
    assert "Tomas Brenner" in expected and "27 days" not in expected
    assert retriever.queries == [([QUESTION], 1), ([QUESTION], 1)]
    sources = [{"document": "02-parking.md", "title": "Parking", "chunk_id": "c-parking", "score": 1.0}]
    assert response.model_extra["domainkd_sources"] == sources
    assert chunks[0].model_extra["domainkd_sources"] == sources


# --- loading a run: app_for_run, serve and the CLI ---


def test_app_for_run_uses_the_run_name_prompt_and_key(trained_run, tiny_config, monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    app, settings = app_for_run(trained_run, ServeConfig(api_key_env="MY_KEY", max_tokens_limit=8))
    assert (settings.model_name, settings.system_prompt, settings.api_key) == ("tiny", tiny_config.system_prompt, KEY)
    with serving(app) as url:
        client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
        assert [model.id for model in client.models.list()] == ["tiny"]
        assert ask_named(client, "tiny").usage.completion_tokens <= 8
    monkeypatch.delenv("MY_KEY")
    assert app_for_run(trained_run, ServeConfig(api_key_env="MY_KEY", model_name="handbook"))[1].api_key is None


def ask_named(client, name):
    return client.chat.completions.create(model=name, messages=[{"role": "user", "content": QUESTION}])


def test_run_loading_errors_name_the_fix(trained_run, tmp_path):
    with pytest.raises(DomainKDError, match="does not exist"):
        app_for_run(tmp_path / "nowhere")
    with pytest.raises(ValidationError, match="name an environment variable such as DOMAINKD_API_KEY") as error:
        ServeConfig(api_key_env=KEY + "-with-dashes")
    assert KEY not in str(error.value)
    with pytest.raises(ValidationError, match="Input should be 'none', 'bm25', 'dense' or 'hybrid'"):
        ServeConfig(retrieval="fuzzy")
    shutil.rmtree(RunPaths(trained_run).model)
    with pytest.raises(DomainKDError, match="run `domainkd train CONFIG` first"):
        app_for_run(trained_run)
    RunPaths(trained_run).config.unlink()
    with pytest.raises(DomainKDError, match="config.yaml is missing"):
        app_for_run(trained_run)


def test_serve_prints_its_url_and_warns_without_a_key_off_loopback(trained_run, monkeypatch, capsys):
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kwargs: started.append((host, port)))
    monkeypatch.delenv("DOMAINKD_API_KEY", raising=False)
    result = CliRunner().invoke(cli_app, ["serve", str(trained_run), "--host", "0.0.0.0", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert started == [("0.0.0.0", 8123)]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("warning: serving on 0.0.0.0 without an API key") and "DOMAINKD_API_KEY" in lines[0]
    assert lines[1] == "serving model 'tiny' at http://0.0.0.0:8123/v1"
    quiet = CliRunner().invoke(cli_app, ["serve", str(trained_run)], env={"DOMAINKD_API_KEY": ""})
    assert quiet.stdout.strip().splitlines() == ["serving model 'tiny' at http://127.0.0.1:8000/v1"]
    missing = CliRunner().invoke(cli_app, ["serve", str(Path(trained_run) / "missing")])
    assert isinstance(missing.exception, DomainKDError)


def test_serve_reads_the_run_serve_section_and_options_override_it(trained_run, monkeypatch):
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kwargs: started.append((host, port)))
    config_path = RunPaths(trained_run).config
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["serve"] = {"host": "localhost", "port": 8321, "model_name": "handbook", "max_tokens_limit": 16}
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert app_for_run(trained_run)[1].max_tokens_limit == 16
    from_yaml = CliRunner().invoke(cli_app, ["serve", str(trained_run)], env={"DOMAINKD_API_KEY": ""})
    assert from_yaml.exit_code == 0, from_yaml.output
    assert from_yaml.stdout.strip().splitlines() == ["serving model 'handbook' at http://localhost:8321/v1"]
    overridden = CliRunner().invoke(cli_app, ["serve", str(trained_run), "--port", "8124", "--model-name", "other"])
    assert overridden.exit_code == 0, overridden.output
    assert overridden.stdout.strip().splitlines()[-1] == "serving model 'other' at http://localhost:8124/v1"
    assert started == [("localhost", 8321), ("localhost", 8124)]


def test_bad_serve_options_are_one_sentence_naming_the_option(trained_run):
    bad_retrieval = CliRunner().invoke(cli_app, ["serve", str(trained_run), "--retrieval", "fuzzy"])
    assert isinstance(bad_retrieval.exception, DomainKDError)
    assert str(bad_retrieval.exception) == "--retrieval 'fuzzy' is unknown; choose from none, bm25, dense, hybrid."
    bad_env = CliRunner().invoke(cli_app, ["serve", str(trained_run), "--api-key-env", KEY + "-with-dashes"])
    assert str(bad_env.exception) == (
        "--api-key-env: name an environment variable such as DOMAINKD_API_KEY (letters, digits, _), not the key."
    )


def test_bm25_retrieval_over_the_run_chunks_grounds_the_answer(tiny_config, tiny_model, monkeypatch):
    from domainkd.data.build import load_chunks, prepare_data
    from domainkd.serving import completion

    prepare_data(tiny_config)  # writes config.yaml and data/chunks.jsonl
    paths = RunPaths(tiny_config.output_dir)
    shutil.copytree(tiny_model, paths.model)
    user_turns = []
    monkeypatch.setattr(completion, "excerpt_prompt", lambda *args: user_turns.append(excerpt_prompt(*args)) or user_turns[-1])
    app, _ = app_for_run(paths.root, ServeConfig(retrieval="bm25", top_k=1, max_tokens_limit=4))
    parking = next(chunk for chunk in load_chunks(paths) if chunk.document == "02-parking.md")
    with serving(app) as url:
        response = ask_named(openai.OpenAI(base_url=url, api_key="unused", max_retries=0), "tiny")
    assert user_turns == [excerpt_prompt(QUESTION, [parking], tiny_config.refusal_text)]
    assert "Tomas Brenner" in user_turns[0]
    [source] = response.model_extra["domainkd_sources"]
    assert (source["document"], source["chunk_id"], source["title"]) == ("02-parking.md", parking.chunk_id, parking.title)
    assert source["score"] > 0
    tokenizer = load_causal_lm(tiny_model)[1]
    messages = [{"role": "system", "content": tiny_config.system_prompt}, {"role": "user", "content": user_turns[0]}]
    assert response.usage.prompt_tokens == len(tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"])
    assert (paths.retrieval_index / "manifest.json").is_file(), "the index was built in the run's retrieval/ folder"


class FixedAnswerModel(GatedModel):
    """The model, but every generation is ``answer`` (fed to a streamer as generate would)."""

    def __init__(self, model, tokenizer, answer):
        super().__init__(model)
        self.gate.set()
        self.answer_ids = torch.tensor([tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]])

    def generate(self, input_ids, streamer=None, **kwargs):
        if streamer is not None:
            streamer.put(input_ids)
            for token in self.answer_ids[0]:
                streamer.put(token.view(1, 1))
            streamer.end()
        return torch.cat([input_ids, self.answer_ids], dim=1)


@pytest.mark.parametrize("answer, sent", [
    ("Permits cost 85 euros a year.", "Permits cost 85 euros a year."),
    ("Permits cost 90 euros a year.", "I don't know."),  # a number the excerpt does not hold
])
def test_answers_the_excerpts_do_not_back_are_refused_streamed_or_not(student, answer, sent):
    model, tokenizer = student
    retrieval = Retrieval(FakeRetriever(), top_k=1, refusal_text="I don't know.", answer_check=0.5)
    with serving(_app(FixedAnswerModel(model, tokenizer, answer), tokenizer, retrieval=retrieval)) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        response = ask(client, max_tokens=32)
        pieces = [chunk.choices[0].delta.content for chunk in ask(client, max_tokens=32, stream=True) if chunk.choices]
    assert response.choices[0].message.content == sent
    assert "".join(piece for piece in pieces if piece) == sent
    assert sent in pieces  # checked first, then sent whole
