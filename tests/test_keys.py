"""Key-string extraction: each family, the near-misses it must ignore, and real recordings."""

from __future__ import annotations

import doctest

import pytest

import ctxlab.keys
from ctxlab import datasets
from ctxlab.keys import KEY_KINDS, key_strings, key_strings_by_kind


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        (
            "url",
            "see https://github.com/snap-research/locomo, then",
            {"https://github.com/snap-research/locomo"},
        ),
        ("url", "docs at www.example.org/page.", {"www.example.org/page"}),
        ("path", "edit src/ctxlab/tokens.py now", {"src/ctxlab/tokens.py"}),
        ("path", "cd /usr/local/bin && ls", {"/usr/local/bin"}),
        ("path", "run ./run.sh or ../x/y", {"./run.sh", "../x/y"}),
        ("path", "open setup.cfg and README.md.", {"setup.cfg", "README.md"}),
        (
            "identifier",
            "user_id and TokenCounter and iPhone",
            {"user_id", "TokenCounter", "iPhone"},
        ),
        ("identifier", "class XMLParser in __init__", {"XMLParser", "__init__"}),
        (
            "exception",
            "raised ValueError, then MyCustomException",
            {"ValueError", "MyCustomException"},
        ),
        ("number", "paid 1,500 for 12 items, pi 3.14159 and 2023", {"1,500", "3.14159", "2023"}),
        ("date", "on 2023-05-08 and 8/5/2023", {"2023-05-08", "8/5/2023"}),
        (
            "date",
            "1:56 pm on 8 May, 2023; May 8, 2023; June 2023",
            {"8 May, 2023", "May 8, 2023", "June 2023"},
        ),
        ("code", "flight HAT170, model gpt-4o, commit 3f2a9c0b", {"HAT170", "gpt-4o", "3f2a9c0b"}),
    ],
)
def test_each_family(kind: str, text: str, expected: set[str]) -> None:
    assert key_strings_by_kind(text)[kind] == expected
    assert expected <= key_strings(text)


@pytest.mark.parametrize(
    "text",
    [
        "and/or, 1/2 of them",  # slash words and fractions are not paths
        "the 3rd and 10th time at 5pm, 200kg",  # ordinals and units are not codes
        "HTTP LGBTQ NASA Hello",  # all-caps or capitalised words have no inner capital
        "abc _ai x_1 42 99",  # too short, or fewer than 3 digits
        "",
    ],
)
def test_near_misses_are_not_keys(text: str) -> None:
    assert key_strings(text) == set()


def test_iso_timestamps_give_the_date_not_a_code() -> None:
    assert key_strings("at 2024-05-01T08:00:00 on HAT028") == {"2024", "2024-05-01", "HAT028"}


def test_urls_are_not_also_reported_as_paths() -> None:
    by_kind = key_strings_by_kind("see https://example.com/a/b/c.py")
    assert by_kind["path"] == set()
    assert by_kind["url"] == {"https://example.com/a/b/c.py"}


def test_a_string_yields_the_same_keys_wherever_it_appears() -> None:
    alone = key_strings("src/my_mod.py")
    inside = key_strings("I changed src/my_mod.py yesterday.")
    assert alone == inside == {"src/my_mod.py", "my_mod"}


def test_union_of_kinds_is_key_strings() -> None:
    text = "ValueError in src/app.py at https://x.org on 2023-05-08, code HAT170, 1234 rows"
    by_kind = key_strings_by_kind(text)
    assert set(by_kind) == set(KEY_KINDS)
    assert set().union(*by_kind.values()) == key_strings(text)


def test_docstring_example() -> None:
    result = doctest.testmod(ctxlab.keys)
    assert result.attempted >= 1 and result.failed == 0


def test_result_is_a_fresh_set() -> None:
    first = key_strings("user_id 2023")
    first.add("mutated")
    assert "mutated" not in key_strings("user_id 2023")


def test_sweagent_run_mentions_the_patched_file() -> None:
    for conv in datasets.load("sweagent"):
        paths = conv.annotations.get("patch_paths") or ()
        text = "\n".join(m.text for m in conv.messages)
        keys = key_strings(text)
        for path in paths:
            # The agent works in /<repo>/...; the patch names the path relative to the repo.
            assert any(k == path or k.endswith("/" + path) for k in keys), (conv.id, path)


def test_taubench_ids_are_keys() -> None:
    conv = next(c for c in datasets.load("taubench") if c.id == "2-1")
    text = "\n".join(
        m.text + " " + " ".join(c.arguments for c in m.tool_calls) for m in conv.messages
    )
    keys = key_strings(text)
    assert conv.annotations["user_id"] in keys
    for action in conv.annotations["gold_actions"]:
        kwargs = action["kwargs"]
        if "reservation_id" in kwargs:
            assert kwargs["reservation_id"] in keys
        for flight in kwargs.get("flights", ()):
            assert flight["flight_number"] in keys and flight["date"] in keys


def whole_text_keys(text: str) -> set[str]:
    """Every family matched on the whole text at once: what the line-by-line path must equal."""
    return set().union(*ctxlab.keys._find(text).values())


def test_long_texts_read_line_by_line_give_the_same_keys() -> None:
    texts = []
    for name in datasets.names():
        for conv in datasets.load(name):
            texts += [m.text for m in conv.messages if "\n" in m.text]
            texts.append("\n".join(m.text for m in conv.messages))
    long = [t for t in texts if len(t) > ctxlab.keys._SPLIT_ABOVE]
    assert len(long) > 100
    for text in long:
        assert key_strings(text) == whole_text_keys(text)
    # A date written across a line break is still found, and so is everything on each side.
    crossing = "x" * 1000 + "\nWe met on 8 May,\n2023 at build_v2 (see /etc/hosts)\nMay\n2024"
    found = key_strings(crossing)
    assert found == whole_text_keys(crossing)
    assert {"8 May,\n2023", "May\n2024", "build_v2", "/etc/hosts"} <= found
