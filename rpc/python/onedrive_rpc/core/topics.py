"""Topics, subscription patterns and an index that matches them, with NATS
semantics. Pure logic: no I/O, no clock.

A topic is dot-separated levels, e.g. ``drive.abc123.Documents.report``. A
level is a non-empty string with no ``.`` and no whitespace. A pattern is a
topic in which a whole level may also be a wildcard:

- ``*`` matches exactly one level: ``a.b.*`` matches ``a.b.c``, not ``a.b``
  nor ``a.b.c.d``;
- ``>``, only as the last level, matches one or more levels: ``a.>`` matches
  ``a.b`` and ``a.b.c``, not ``a``.

A wildcard inside a level (``a.b*``) is not a wildcard but an error, and a
topic may not use ``*`` or ``>`` as a level at all, so a published topic can
never be mistaken for a pattern.
"""
from __future__ import annotations

import re
from typing import Dict, Generic, Hashable, List, Tuple, TypeVar

__all__ = [
    "MAX_TOPIC_LENGTH",
    "MAX_TOPIC_LEVELS",
    "TopicError",
    "check_topic",
    "check_pattern",
    "matches",
    "TopicIndex",
]

# Topics travel in every Publish and Deliver frame and patterns are held per
# subscription: a length cap keeps a peer from making us store or split
# megabytes per message, and a level cap bounds the trie walk of a publish.
MAX_TOPIC_LENGTH = 1024
MAX_TOPIC_LEVELS = 64

ONE = "*"    # a whole level matching exactly one level
REST = ">"   # the last level, matching one or more levels

_BAD_CHAR = re.compile(r"\s")
# Error messages quote the offending topic; cut it so an over-long topic
# does not make an over-long message.
_QUOTE_LIMIT = 80


class TopicError(ValueError):
    """A topic or pattern is malformed; the message names it and says how."""


def _quote(text: str) -> str:
    if len(text) > _QUOTE_LIMIT:
        return repr(text[:_QUOTE_LIMIT]) + f"... ({len(text)} characters)"
    return repr(text)


def _levels(text: object, what: str) -> List[str]:
    """Split and check what topics and patterns share: type, sizes, levels."""
    if not isinstance(text, str):
        raise TopicError(f"{what} must be a str, got {type(text).__name__} {text!r:.{_QUOTE_LIMIT}}")
    if not text:
        raise TopicError(f"{what} is empty")
    if len(text) > MAX_TOPIC_LENGTH:
        raise TopicError(f"{what} {_quote(text)} is {len(text)} characters long, "
                         f"more than the maximum of {MAX_TOPIC_LENGTH}")
    levels = text.split(".")
    if len(levels) > MAX_TOPIC_LEVELS:
        raise TopicError(f"{what} {_quote(text)} has {len(levels)} levels, "
                         f"more than the maximum of {MAX_TOPIC_LEVELS}")
    for number, level in enumerate(levels, 1):
        if not level:
            raise TopicError(f"{what} {_quote(text)}: level {number} is empty")
        bad = _BAD_CHAR.search(level)
        if bad:
            raise TopicError(f"{what} {_quote(text)}: level {number} {_quote(level)} "
                             f"contains whitespace {bad.group()!r}")
    return levels


def check_topic(topic: str) -> None:
    """Raise TopicError unless `topic` may be published: no wildcards."""
    for number, level in enumerate(_levels(topic, "topic"), 1):
        if ONE in level or REST in level:
            raise TopicError(f"topic {_quote(topic)}: level {number} {_quote(level)} contains a "
                             f"wildcard; '*' and '>' are only allowed in subscription patterns")


def check_pattern(pattern: str) -> None:
    """Raise TopicError unless `pattern` is a valid subscription pattern."""
    levels = _levels(pattern, "pattern")
    last = len(levels)
    for number, level in enumerate(levels, 1):
        if level == REST:
            if number != last:
                raise TopicError(f"pattern {_quote(pattern)}: '>' is level {number} of {last}; "
                                 f"it may only be the last level")
        elif level != ONE and (ONE in level or REST in level):
            raise TopicError(f"pattern {_quote(pattern)}: level {number} {_quote(level)} mixes a "
                             f"wildcard with other characters; '*' and '>' must be a whole level")


def matches(pattern: str, topic: str) -> bool:
    """Whether `pattern` matches `topic`; both are assumed valid."""
    want = pattern.split(".")
    have = topic.split(".")
    for number, level in enumerate(want):
        if level == REST:
            return len(have) > number
        if number >= len(have) or (level != ONE and level != have[number]):
            return False
    return len(want) == len(have)


K = TypeVar("K", bound=Hashable)


class _Node:
    """One trie level. Wildcard edges are plain children keyed ``*`` and
    ``>``: topics can never contain those levels, so they cannot collide."""

    __slots__ = ("children", "keys")

    def __init__(self) -> None:
        self.children: Dict[str, _Node] = {}
        #: Keys whose pattern ends here (a dict as an ordered set).
        self.keys: Dict[Hashable, None] = {}


class TopicIndex(Generic[K]):
    """Patterns -> keys, matched against topics fast: a trie on levels, so a
    publish costs O(levels + matching trie nodes), not O(subscriptions).

    Each key holds exactly one pattern. `match` returns keys in the order
    they were added, so delivery order is deterministic. Removing a key
    prunes the trie nodes nothing uses any more, so memory follows the live
    subscriptions, not their history.
    """

    __slots__ = ("_root", "_keys", "_added", "_nodes")

    def __init__(self) -> None:
        self._root = _Node()
        #: key -> (its pattern, when it was added): the order `match` keeps.
        self._keys: Dict[K, Tuple[str, int]] = {}
        self._added = 0
        #: Trie nodes below the root; zero once every key is removed.
        self._nodes = 0

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def pattern(self, key: K) -> str:
        """The pattern `key` was added with; KeyError if unknown."""
        return self._keys[key][0]

    def add(self, key: K, pattern: str) -> None:
        """Index `key` under `pattern`; TopicError if the pattern is invalid,
        ValueError if the key is already indexed."""
        check_pattern(pattern)
        if key in self._keys:
            raise ValueError(f"key {key!r} is already indexed, with pattern "
                             f"{_quote(self._keys[key][0])}; remove it first")
        node = self._root
        for level in pattern.split("."):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
                self._nodes += 1
            node = child
        node.keys[key] = None
        self._added += 1
        self._keys[key] = (pattern, self._added)

    def remove(self, key: K) -> None:
        """Forget `key`; KeyError if it is not indexed."""
        try:
            pattern, _ = self._keys.pop(key)
        except KeyError:
            raise KeyError(f"key {key!r} is not indexed") from None
        path: List[Tuple[_Node, str]] = []
        node = self._root
        for level in pattern.split("."):
            path.append((node, level))
            node = node.children[level]
        del node.keys[key]
        for parent, level in reversed(path):
            child = parent.children[level]
            if child.keys or child.children:
                break
            del parent.children[level]
            self._nodes -= 1

    def match(self, topic: str) -> List[K]:
        """Every key whose pattern matches `topic` (assumed valid), each
        once, in the order the keys were added."""
        found: List[K] = []
        frontier = [self._root]
        for level in topic.split("."):
            following: List[_Node] = []
            for node in frontier:
                children = node.children
                if not children:
                    continue
                rest = children.get(REST)
                if rest is not None:
                    found.extend(rest.keys)  # type: ignore[arg-type]
                exact = children.get(level)
                if exact is not None:
                    following.append(exact)
                one = children.get(ONE)
                if one is not None:
                    following.append(one)
            if not following:
                break
            frontier = following
        else:
            for node in frontier:
                found.extend(node.keys)  # type: ignore[arg-type]
        if len(found) > 1:
            keys = self._keys
            found.sort(key=lambda key: keys[key][1])
        return found

    def clear(self) -> None:
        """Forget every key."""
        self._root = _Node()
        self._keys.clear()
        self._nodes = 0

    def _node_count(self) -> int:
        """Trie nodes below the root, counted by walking (for tests)."""
        count = 0
        stack: List[_Node] = [self._root]
        while stack:
            node = stack.pop()
            count += len(node.children)
            stack.extend(node.children.values())
        return count
