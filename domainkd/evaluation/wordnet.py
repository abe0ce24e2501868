"""WordNet 3.0 for METEOR's synonym stage, installed offline from Debian's ``wordnet-base``.

NLTK's WordNet data is not on PyPI. Debian ships the WordNet 3.0 database files in
``wordnet-base``; ``domainkd models fetch wordnet`` downloads that package with
``apt-get download`` (no root needed), checks its sha256, unpacks it with ``dpkg-deb``
and writes the one file NLTK also wants and Debian lacks: ``lexnames``, the standard
list of the 45 lexicographer files (taken from the package's own lexnames(5) manual page).
A system-wide ``/usr/share/wordnet`` (``apt-get install wordnet-base``) works too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from domainkd.errors import DomainKDError
from domainkd.io import atomic_dir
from domainkd.models.cache import cache_dir, sha256_of

PACKAGE = "wordnet-base=1:3.0-37"
PACKAGE_SHA256 = "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752"
SYSTEM_DIRECTORY = Path("/usr/share/wordnet")
REQUIRED_FILES = ("data.noun", "index.noun", "data.verb", "index.verb", "data.adj", "index.adj", "data.adv", "index.adv")
LEXNAMES = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body
noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive
noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation
noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication
verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception
verb.possession verb.social verb.stative verb.weather adj.ppl""".split()
_SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
MISSING = (
    "WordNet (for METEOR) is not installed; run `domainkd models fetch wordnet` "
    "(or `apt-get install wordnet-base`), or drop meteor from eval.metrics."
)


def lexnames_text() -> str:
    """The ``lexnames`` file: ``NN<TAB>name<TAB>syntactic category`` for the 45 lexicographer files."""
    lines = [f"{number:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}" for number, name in enumerate(LEXNAMES)]
    return "\n".join(lines) + "\n"


def wordnet_directory() -> Path:
    """Where domainkd keeps WordNet: ``$DOMAINKD_CACHE/nltk_data/corpora/wordnet``."""
    return cache_dir() / "nltk_data" / "corpora" / "wordnet"


def _complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in REQUIRED_FILES)


def is_installed() -> bool:
    """Whether WordNet is in domainkd's cache, ready for METEOR."""
    directory = wordnet_directory()
    return _complete(directory) and (directory / "lexnames").is_file()


def install_wordnet() -> Path:
    """Download, verify and unpack Debian's wordnet-base into the cache (once); return its directory.

    Raises:
        DomainKDError: apt-get/dpkg-deb are missing, the download fails or its sha256 differs.
    """
    target = wordnet_directory()
    if is_installed():
        return target
    if _complete(SYSTEM_DIRECTORY):
        return _assemble(SYSTEM_DIRECTORY, target)
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise DomainKDError(
            "installing WordNet needs Debian's apt-get and dpkg-deb; on another system copy WordNet 3.0's dict files "
            f"into {target} and add its lexnames file."
        )
    with tempfile.TemporaryDirectory(prefix="domainkd-wordnet-") as scratch:
        work = Path(scratch)
        try:
            _run(["apt-get", "download", PACKAGE], work)
        except DomainKDError:
            if os.geteuid() != 0:
                raise
            _run(["apt-get", "update", "-qq"], work)  # a fresh machine may have no package lists yet
            _run(["apt-get", "download", PACKAGE], work)
        package = next(work.glob("wordnet-base_*.deb"), None)
        if package is None or sha256_of(package) != PACKAGE_SHA256:
            raise DomainKDError(f"the downloaded {PACKAGE} does not have the expected sha256; refusing to install it.")
        _run(["dpkg-deb", "-x", str(package), str(work / "unpacked")], work)
        return _assemble(work / "unpacked" / "usr" / "share" / "wordnet", target)


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DomainKDError(
            f"`{' '.join(command)}` failed ({detail}); run `apt-get update` first, or install wordnet-base yourself."
        )


def _assemble(source: Path, target: Path) -> Path:
    with atomic_dir(target) as tmp:
        for path in source.iterdir():
            if path.is_file():
                shutil.copy2(path, tmp / path.name)
        if not (tmp / "lexnames").is_file():
            (tmp / "lexnames").write_text(lexnames_text(), encoding="utf-8")
    return target


@lru_cache(maxsize=1)
def load_wordnet() -> Any:
    """NLTK's WordNet reader over the installed files.

    Raises:
        DomainKDError: WordNet is not installed (the message says how to install it).
    """
    directory = wordnet_directory()
    if not is_installed():
        raise DomainKDError(MISSING)
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class WordNet30(WordNetCorpusReader):
        """The reader without its start-up mapping to other WordNet versions (only the multilingual OMW
        needs it, and it needs ``index.sense``, which wordnet-base does not ship)."""

        def map_wn(self, version: str = "wordnet") -> None:
            return None

    data_root = str(directory.parents[1])
    if data_root not in nltk.data.path:
        nltk.data.path.append(data_root)  # NLTK reads corpora only under its data path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "multilingual functions are not available": not needed
        return WordNet30(str(directory), None)
