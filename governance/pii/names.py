"""The name lexicon: first and last names of 106 countries, from the `names-dataset` package.

names-dataset (Remy, 2021; Apache 2.0) ships 727,556 first names and 983,826 last names with
the rank each holds among the names of every country it is common in. The scanner needs only
a word's best rank as a first and as a last name, so the lexicon is derived once from the
package's pickles into a compact cache file (sorted words and one byte of rank tiers each),
keyed by the package's version, and loaded in a fraction of a second after that. The cache is
built by `python -m governance.pii.names` (the Makefile runs it after installing) or, failing
that, on first use; building takes about ten seconds and two gigabytes of memory once.

Rank tiers: 1 = among the 1,000 most common of some country, 2 = among 5,000, 3 = any rank.
The list is noisy (it holds "Date", "Line" and "Buenas"): a word's rank alone never makes it a
name; the recognizers combine it with case, position and the dictionaries (`recognizers`).

The other side of that judgement is how common a word is in English. A dictionary alone says
too little: GCIDE holds "roodly", "maha" and "stroud", so a name spelled like an archaic word
was read as a word. `frequent_words()` is the set of English words that `wordfreq` (Speer,
2022; its English list pools Wikipedia, subtitles, news, books, web text and social media)
puts at a Zipf frequency of 3.5 or more (three in a million words: "story", "rose", "han"
are in; "maha" 2.9, "stroud" 2.9, "dung" 3.2 are not). `spanish_only_words()` does the same
for Spanish words that English text seldom uses, which in lower case are never read as names.
Both are derived once into cache files, so the scanner never loads wordfreq's tables.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import os
import pickle
import tempfile
import unicodedata
from pathlib import Path

FORMAT = 1
TIERS = ((1000, 1), (5000, 2))
FREQUENT_ZIPF = 3.5
COMMON_ZIPF = 4.5


def unaccent(text: str) -> str:
    """Text without accents, as people type it ("Nguyen" for "Nguyễn")."""
    decomposed = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fold(word: str) -> str:
    """A word as the lexicon keys it: no accents, "ł" as "l", lower case."""
    return unaccent(word.replace("ł", "l").replace("Ł", "L")).lower()


def _tier(rank: int | None) -> int:
    if rank is None:
        return 0
    for limit, tier in TIERS:
        if rank <= limit:
            return tier
    return 3


def _cache_root() -> Path:
    return Path(
        os.environ.get("GOVERNANCE_PII_CACHE")
        or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "governance"
        )
    )


def cache_path() -> Path:
    version = importlib.metadata.version("names-dataset")
    return _cache_root() / f"names-dataset-{version}-v{FORMAT}.bin"


def words_cache_path(kind: str = "en") -> Path:
    version = importlib.metadata.version("wordfreq")
    return _cache_root() / f"wordfreq-{version}-{kind}-v{FORMAT}.bin"


def _write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
        handle.write(gzip.compress(payload, compresslevel=6))
    os.replace(handle.name, path)


def _frequent(kind: str) -> list[str]:
    """ "en": English words at or above `FREQUENT_ZIPF`. "es-not-en": Spanish words at or above
    4.0 that are ten times rarer in English ("mando", "aviso", "mañana"; not "maria" or
    "cruz", which English text uses as names as much)."""
    from wordfreq import get_frequency_dict

    english = get_frequency_dict("en")
    if kind in ("en", "en-common"):
        zipf = FREQUENT_ZIPF if kind == "en" else COMMON_ZIPF
        floor = 10 ** (zipf - 9)  # Zipf = log10(frequency per billion words)
        return sorted(w for w, f in english.items() if f >= floor and w.isalpha())
    spanish = get_frequency_dict("es")
    return sorted(
        {
            fold(w)
            for w, f in spanish.items()
            if f >= 1e-5
            and w.isalpha()
            and max(english.get(w, 0.0), english.get(fold(w), 0.0)) * 10 < f
        }
    )


def build_words(path: Path, kind: str = "en") -> Path:
    _write_atomically(path, "\n".join(_frequent(kind)).encode())
    return path


def _words(kind: str) -> frozenset[str]:
    path = words_cache_path(kind)
    if not path.exists():
        build_words(path, kind)
    return frozenset(gzip.decompress(path.read_bytes()).decode().split("\n"))


@functools.cache
def frequent_words() -> frozenset[str]:
    """English words that are common in running text (Zipf >= FREQUENT_ZIPF in wordfreq)."""
    return _words("en")


@functools.cache
def common_words() -> frozenset[str]:
    """English words at Zipf >= COMMON_ZIPF (30 in a million: "boss", "said", "mark"): in
    lower case these are words even when they are also first names."""
    return _words("en-common")


@functools.cache
def spanish_only_words() -> frozenset[str]:
    """Common Spanish words English text seldom uses, unaccented: in lower case in a message,
    "lo mando mañana" is Spanish, not a name."""
    return _words("es-not-en")


def build(path: Path) -> Path:
    """Derive the lexicon from names-dataset's pickles and write it atomically to `path`."""
    from importlib.resources import files

    data = files("names_dataset") / "v3"
    best: dict[str, list[int]] = {}
    for column, name in enumerate(("first_names.pkl.gz", "last_names.pkl.gz")):
        with gzip.open(str(data / name)) as handle:
            table = pickle.load(handle)  # noqa: S301 (the installed package's own data)
        for full, info in table.items():
            ranks = info.get("rank") or {}
            rank = min(ranks.values()) if ranks else None
            for part in full.replace("-", " ").split():
                word = fold(part)
                if len(word) < 2 or not word.isalpha() or not word.isascii():
                    continue
                tiers = best.setdefault(word, [0, 0])
                tier = _tier(rank) or 3
                tiers[column] = min(tiers[column] or 9, tier)
        del table
    words = sorted(best)
    codes = bytes(best[w][0] * 4 + best[w][1] for w in words)
    _write_atomically(path, "\n".join(words).encode() + b"\0" + codes)
    return path


class NameLexicon:
    """Best rank tiers of a word as a first and as a last name; 0 when it is neither."""

    def __init__(self, path: Path | None = None) -> None:
        path = path or cache_path()
        if not path.exists():
            build(path)
        payload = gzip.decompress(path.read_bytes())
        text, codes = payload.split(b"\0", 1)
        self.codes = dict(zip(text.decode().split("\n"), codes, strict=True))
        self.source = path.name

    def tiers(self, word: str) -> tuple[int, int]:
        code = self.codes.get(fold(word), 0)
        return code // 4, code % 4

    def rank_tier(self, word: str) -> int:
        """The best tier as either kind of name (1 best, 3 worst), 0 when unknown."""
        first, last = self.tiers(word)
        return min(t for t in (first, last, 9) if t) % 9

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and fold(word) in self.codes


@functools.cache
def lexicon() -> NameLexicon:
    return NameLexicon()


if __name__ == "__main__":
    target = cache_path()
    print(f"{target} ({len(NameLexicon(build(target)).codes)} words)")
    for kind in ("en", "en-common", "es-not-en"):
        target = build_words(words_cache_path(kind), kind)
        print(f"{target} ({len(_words(kind))} words)")
