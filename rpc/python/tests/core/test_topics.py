"""Topics, patterns and the trie that matches them: NATS semantics, clear
errors, agreement with a brute-force matcher, and no memory left behind."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onedrive_rpc.core.topics import (MAX_TOPIC_LENGTH, MAX_TOPIC_LEVELS, TopicError,
                                      TopicIndex, check_pattern, check_topic, matches)


@pytest.mark.parametrize("pattern, topic, expected", [
    ("drive.abc123.Documents.report", "drive.abc123.Documents.report", True),
    ("drive.abc123.Documents.report", "drive.abc123.Documents", False),
    ("drive.abc123.Documents", "drive.abc123.Documents.report", False),
    ("a.b.*", "a.b.c", True),
    ("a.b.*", "a.b", False),
    ("a.b.*", "a.b.c.d", False),
    ("a.*.c", "a.x.c", True),
    ("a.*.c", "a.x.d", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("a.>", "a.b", True),
    ("a.>", "a.b.c", True),
    ("a.>", "a", False),
    ("a.>", "b.c", False),
    (">", "a", True),
    (">", "a.b.c", True),
    ("*.>", "a", False),
    ("*.>", "a.b", True),
    ("a.*.>", "a.b.c.d", True),
    ("a.*.>", "a.b", False),
])
def test_matches(pattern, topic, expected):
    assert matches(pattern, topic) is expected
    index = TopicIndex()
    index.add("k", pattern)
    assert index.match(topic) == (["k"] if expected else [])


@pytest.mark.parametrize("text", ["a", "drive.abc123.Documents.report", "a-b_c:d/e", "é.ü",
                                  ".".join(["x"] * MAX_TOPIC_LEVELS), "x" * MAX_TOPIC_LENGTH])
def test_valid_topics_are_valid_patterns(text):
    check_topic(text)
    check_pattern(text)


@pytest.mark.parametrize("pattern", ["*", ">", "a.*", "a.>", "*.*.>", "a.*.b.>"])
def test_valid_patterns(pattern):
    check_pattern(pattern)


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("a..b", "'a..b': level 2 is empty"),
    (".a", "'.a': level 1 is empty"),
    ("a.", "'a.': level 2 is empty"),
    ("a.b c", "'a.b c': level 2 'b c' contains whitespace ' '"),
    ("a.\tb", r"level 2 '\\tb' contains whitespace '\\t'"),
    ("x" * (MAX_TOPIC_LENGTH + 1), f"is {MAX_TOPIC_LENGTH + 1} characters long, more than the maximum "
                                   f"of {MAX_TOPIC_LENGTH}"),
    (".".join(["x"] * (MAX_TOPIC_LEVELS + 1)), f"has {MAX_TOPIC_LEVELS + 1} levels, more than the "
                                               f"maximum of {MAX_TOPIC_LEVELS}"),
])
def test_invalid_for_both(text, message):
    with pytest.raises(TopicError, match="^topic .*" + message):
        check_topic(text)
    with pytest.raises(TopicError, match="^pattern .*" + message):
        check_pattern(text)


@pytest.mark.parametrize("topic, message", [
    ("a.*", r"topic 'a.\*': level 2 '\*' contains a wildcard"),
    ("a.>", r"topic 'a.>': level 2 '>' contains a wildcard"),
    ("a.b*", r"topic 'a.b\*': level 2 'b\*' contains a wildcard"),
    ("a>.b", r"level 1 'a>' contains a wildcard; '\*' and '>' are only allowed in subscription"),
])
def test_invalid_topics(topic, message):
    with pytest.raises(TopicError, match=message):
        check_topic(topic)


@pytest.mark.parametrize("pattern, message", [
    ("a.>.b", r"pattern 'a.>.b': '>' is level 2 of 3; it may only be the last level"),
    (">.>", r"'>' is level 1 of 2"),
    ("a.b*", r"pattern 'a.b\*': level 2 'b\*' mixes a wildcard with other characters"),
    ("a.>>", r"level 2 '>>' mixes a wildcard"),
    ("**", r"level 1 '\*\*' mixes a wildcard"),
])
def test_invalid_patterns(pattern, message):
    with pytest.raises(TopicError, match=message):
        check_pattern(pattern)


def test_errors_are_value_errors_and_quote_long_text_briefly():
    assert issubclass(TopicError, ValueError)
    with pytest.raises(TopicError) as info:
        check_topic("x" * 5000)
    assert len(str(info.value)) < 200 and "(5000 characters)" in str(info.value)
    with pytest.raises(TopicError, match="topic must be a str, got bytes b'a.b'"):
        check_topic(b"a.b")  # type: ignore[arg-type]


def test_index_returns_each_key_once_in_insertion_order():
    index: TopicIndex[str] = TopicIndex()
    index.add("rest", "a.>")
    index.add("exact", "a.b.c")
    index.add("one", "a.*.c")
    index.add("all", ">")
    index.add("other", "a.b.d")
    assert index.match("a.b.c") == ["rest", "exact", "one", "all"]
    assert index.match("a.x.c") == ["rest", "one", "all"]
    assert index.match("a") == ["all"]
    assert index.match("z.b.c") == ["all"]
    index.remove("exact")
    index.add("exact", "a.b.c")  # re-added: now last
    assert index.match("a.b.c") == ["rest", "one", "all", "exact"]
    assert len(index) == 5 and "one" in index and "nope" not in index
    assert index.pattern("one") == "a.*.c"


def test_index_keys_sharing_a_pattern():
    index: TopicIndex[int] = TopicIndex()
    for key in (3, 1, 2):
        index.add(key, "a.b")
    assert index.match("a.b") == [3, 1, 2]
    index.remove(1)
    assert index.match("a.b") == [3, 2]


def test_index_errors():
    index: TopicIndex[str] = TopicIndex()
    index.add("k", "a.b")
    with pytest.raises(ValueError, match="key 'k' is already indexed, with pattern 'a.b'"):
        index.add("k", "a.c")
    with pytest.raises(TopicError, match="pattern 'a.>.c'"):
        index.add("j", "a.>.c")
    assert "j" not in index
    with pytest.raises(KeyError, match="key 'j' is not indexed"):
        index.remove("j")
    assert index.match("a.b") == ["k"]


def test_remove_prunes_only_unused_nodes():
    index: TopicIndex[str] = TopicIndex()
    index.add("long", "a.b.c.d")
    index.add("short", "a.b")
    assert index._node_count() == index._nodes == 4
    index.remove("long")
    assert index._node_count() == index._nodes == 2
    assert index.match("a.b") == ["short"]
    index.remove("short")
    assert index._node_count() == index._nodes == 0


LEVELS = st.sampled_from(["a", "b", "c"])
topics = st.lists(LEVELS, min_size=1, max_size=5).map(".".join)
patterns = st.lists(st.sampled_from(["a", "b", "c", "*"]), min_size=1, max_size=5).flatmap(
    lambda levels: st.sampled_from([levels, levels[:-1] + [">"]])).map(".".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(patterns, max_size=30), st.lists(topics, min_size=1, max_size=20),
       st.lists(st.integers(0, 29)), st.randoms(use_true_random=False))
def test_index_agrees_with_brute_force_and_empties(pattern_list, topic_list, removals, rng):
    index: TopicIndex[int] = TopicIndex()
    live = {}
    for key, pattern in enumerate(pattern_list):
        index.add(key, pattern)
        live[key] = pattern
    for key in removals:
        if key in live:
            index.remove(key)
            del live[key]

    for topic in topic_list:
        expected = [key for key, pattern in live.items() if matches(pattern, topic)]
        assert index.match(topic) == expected
    assert len(index) == len(live)
    assert index._node_count() == index._nodes

    keys = list(live)
    rng.shuffle(keys)
    for key in keys:
        index.remove(key)
    assert len(index) == 0 and index._node_count() == 0 and index._nodes == 0
    assert all(index.match(topic) == [] for topic in topic_list)


def test_churn_leaves_the_trie_empty():
    index: TopicIndex[int] = TopicIndex()
    for round_ in range(50):
        for key in range(100):
            index.add(key, f"drive.{round_}.{key % 7}.{'*' if key % 3 else 'x'}.>")
        for key in range(100):
            index.remove(key)
        assert index._nodes == 0 and index._node_count() == 0
