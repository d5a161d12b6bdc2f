"""Key strings: the exact tokens a conversation is likely to need again.

`key_strings(text)` finds file paths, identifiers with ``_`` or inner capitals (at least 4
characters), ``*Error``/``*Exception`` names, URLs, numbers with at least 3 digits, dates and
alphanumeric codes. The `key_string_recall` metric and the extractive summarizer both use it,
so what counts as a key is defined here only.

Each family is matched independently on the whole text, so ``src/my_mod.py`` yields the path
and the identifier ``my_mod``, and ``2023-05-08`` yields the date and the number ``2023``: a
context that contains a string always yields the same keys for it, whatever surrounds it.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["KEY_KINDS", "key_strings", "key_strings_by_kind"]

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_TRAILING = ".,;:!?'\")]}>"

_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"'`]+|\bwww\.[^\s<>\"'`]+", re.IGNORECASE)
# Slash-separated words; whether it is a path is decided in `_is_path`.
_PATH = re.compile(r"(?<![\w/.:-])(?:~|\.{1,2})?/?(?:[\w.@+-]+/)+[\w.@+-]*")
_FILE = re.compile(r"(?<![\w/.-])[\w-]+(?:\.[\w-]+)*\.[A-Za-z][A-Za-z0-9]{0,7}\b")
_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]{3,}\b")
_EXCEPTION = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*(?:Error|Exception)\b")
_NUMBER = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)*(?![\w])")
_DATE = re.compile(
    r"\b\d{4}-\d{1,2}-\d{1,2}(?!\d)"
    r"|\b\d{1,2}/\d{1,2}/(?:\d{4}|\d{2})\b"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}\.?,?\s+\d{{4}}\b"
    rf"|\b{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b"
    rf"|\b{_MONTH}\s+\d{{4}}\b"
)
_CODE = re.compile(r"\b[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\b")
_INNER_CAPITAL = re.compile(r"[a-z][A-Z]|[A-Z]{2}[a-z]")
_NOT_A_CODE = re.compile(
    r"\d+(?:st|nd|rd|th|am|pm|s|k|m|h|x|d|g|kg|km|gb|mb|px)|\d{4}-\d{1,2}-\d{1,2}T\d*",
    re.IGNORECASE,
)
# File name extensions that are really abbreviations or sentence ends ("e.g", "etc.").
_FILE_EXTENSIONS = re.compile(
    r"\.(?:py|pyi|ipynb|js|jsx|ts|tsx|json|jsonl|md|rst|txt|csv|tsv|ya?ml|toml|cfg|ini|conf"
    r"|c|h|cc|cpp|hpp|go|rs|java|kt|rb|php|sh|bash|zsh|ps1|html?|css|scss|xml|sql|lock"
    r"|log|traj|patch|diff|pdf|png|jpe?g|gif|svg|zip|gz|tar|whl|so|dll|exe|env|cfg)$",
    re.IGNORECASE,
)

#: The key families `key_strings_by_kind` reports, in a fixed order.
KEY_KINDS: tuple[str, ...] = (
    "url",
    "path",
    "identifier",
    "exception",
    "number",
    "date",
    "code",
)


def key_strings(text: str) -> set[str]:
    """The key strings of a text.

    A key string is one of: a URL; a file path (``src/app.py``, ``/etc/hosts``, ``./run``,
    ``a/b/c``) or a file name with a known extension (``setup.cfg``); an identifier of at
    least 4 characters holding ``_`` or an inner capital (``max_tokens``, ``TokenCounter``,
    ``iPhone``); a name ending in ``Error`` or ``Exception``; a number with at least 3 digits
    (``2023``, ``1,500``); a date (``2023-05-08``, ``8/5/2023``, ``8 May, 2023``,
    ``May 8, 2023``, ``May 2023``); an alphanumeric code of at least 4 characters mixing
    letters and digits (``HAT170``, ``gpt-4o``, ``3f2a9c0b``), ordinals and units such as
    ``10th`` or ``200kg`` excluded.

    Strings are returned as they appear (case kept), trailing punctuation removed.

    Args:
        text: any text; empty text has no keys.

    Returns:
        The set of key strings found.

    Examples:
        >>> sorted(key_strings("Fixed ValueError in src/ctxlab/tokens.py on 2024-05-08"))
        ['2024', '2024-05-08', 'ValueError', 'src/ctxlab/tokens.py']
    """
    return set(_keys(text))


def key_strings_by_kind(text: str) -> dict[str, set[str]]:
    """The key strings of a text grouped by family (the keys of `KEY_KINDS`).

    A string can belong to several families (``ValueError`` is an identifier and an
    exception name); `key_strings` is the union.
    """
    return {kind: set(found) for kind, found in _by_kind(text).items()}


@lru_cache(maxsize=65536)
def _keys(text: str) -> frozenset[str]:
    if "\n" in text and len(text) > _SPLIT_ABOVE:
        return _keys_by_line(text)
    out: set[str] = set()
    for found in _by_kind(text).values():
        out |= found
    return frozenset(out)


# Longer texts with several lines are read line by line, each line's keys cached: a running
# summary repeats most lines of the one before it, and tool outputs repeat across turns.
_SPLIT_ABOVE = 1000


def _keys_by_line(text: str) -> frozenset[str]:
    r"""`_keys` of a multi-line text from its lines' keys, the same set.

    No pattern but the date's can match a newline (their character classes exclude it, and a
    line boundary looks the same to their lookarounds and ``\b`` as the string's ends), so
    their matches are those of each line; dates (``8 May,\n2023``) are read on the whole text.
    """
    out: set[str] = {_strip(d) for d in _DATE.findall(text)}
    for line in text.split("\n"):
        out |= _line_keys(line)
    return frozenset(out)


@lru_cache(maxsize=65536)
def _line_keys(line: str) -> frozenset[str]:
    out: set[str] = set()
    for found in _find(line, dates=False).values():
        out |= found
    return frozenset(out)


@lru_cache(maxsize=4096)
def _by_kind(text: str) -> dict[str, frozenset[str]]:
    return _find(text)


def _find(text: str, dates: bool = True) -> dict[str, frozenset[str]]:
    if not text:
        return {kind: frozenset() for kind in KEY_KINDS}
    urls = {_strip(m) for m in _URL.findall(text)}
    # Paths are looked for outside URLs so that a URL is not also reported piecewise as a path.
    rest = _URL.sub(" ", text)
    paths = {p for p in (_strip(m) for m in _PATH.findall(rest)) if _is_path(p)}
    paths |= {f for f in (_strip(m) for m in _FILE.findall(rest)) if _FILE_EXTENSIONS.search(f)}
    found = {
        "url": urls,
        "path": paths,
        "identifier": {w for w in _IDENT.findall(text) if _is_identifier(w)},
        "exception": set(_EXCEPTION.findall(text)),
        "number": {n for n in _NUMBER.findall(text) if sum(c.isdigit() for c in n) >= 3},
        "date": {_strip(d) for d in _DATE.findall(text)} if dates else set(),
        "code": {c for c in _CODE.findall(text) if _is_code(c)},
    }
    return {kind: frozenset(found[kind]) for kind in KEY_KINDS}


def _strip(s: str) -> str:
    return s.rstrip(_TRAILING)


def _is_path(s: str) -> bool:
    parts = [p for p in s.split("/") if p not in ("", ".", "..", "~")]
    if not parts or all(p.isdigit() for p in parts):
        return False  # "/", "1/2", dates written with slashes
    if s.startswith(("/", "./", "../", "~/")) or s.count("/") >= 2:
        return len(s) > 1
    return bool(_FILE_EXTENSIONS.search(parts[-1])) or s.endswith("/")


def _is_identifier(word: str) -> bool:
    core = word.strip("_")
    if "_" in word:
        return bool(core) and not core.isdigit()
    return bool(_INNER_CAPITAL.search(word))


def _is_code(word: str) -> bool:
    if len(word) < 4 or word.isdigit() or word.isalpha() or "_" in word:
        return False
    if not any(c.isdigit() for c in word) or not any(c.isalpha() for c in word):
        return False
    return not _NOT_A_CODE.fullmatch(word)
