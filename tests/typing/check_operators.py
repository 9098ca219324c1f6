"""Type checks of the one-to-one pull and push operators and the chains' fluent
``map``, run by mypy (``[tool.mypy] files``), never by pytest (the name does not
match ``test_*.py``)."""

from __future__ import annotations

from typing_extensions import assert_type

from pullpush import (
    PullChain,
    PullFilterObj,
    PullMapObj,
    PullReduceObj,
    PushChainBuilder,
    PushFilterObj,
    PushMapObj,
    PushReduceObj,
    SinkCollectObj,
    SourceBufferObj,
)


def length(text: str) -> int:
    return len(text)


async def shout(text: str) -> str:
    return text.upper()


def add(total: int, text: str) -> int:
    return total + len(text)


async def add_later(total: int, text: str) -> int:
    return total + len(text)


def pull_operators() -> None:
    words = SourceBufferObj(["a", "bb"], True)
    assert_type(PullMapObj(words, length), PullMapObj[str, int])
    assert_type(PullMapObj(words, shout), PullMapObj[str, str])
    assert_type(PullMapObj(words, lambda w: w * 2), PullMapObj[str, str])
    assert_type(PullFilterObj(words, lambda w: len(w) > 1), PullFilterObj[str])
    assert_type(PullReduceObj(words, add, 0), PullReduceObj[str, int])
    assert_type(PullReduceObj(words, add_later, 0), PullReduceObj[str, int])
    numbers = SourceBufferObj([1, 2], True)
    PullMapObj(numbers, length)  # type: ignore[arg-type]
    PullMapObj(numbers, shout)  # type: ignore[arg-type]
    PullFilterObj(numbers, lambda w: w.startswith("a"))  # type: ignore[attr-defined]
    PullReduceObj(numbers, add, 0)  # type: ignore[arg-type]


def push_operators() -> None:
    lengths: SinkCollectObj[int] = SinkCollectObj()
    assert_type(PushMapObj(lengths, length), PushMapObj[str, int])
    texts: SinkCollectObj[str] = SinkCollectObj()
    assert_type(PushMapObj(texts, shout), PushMapObj[str, str])
    assert_type(PushFilterObj(texts, lambda w: len(w) > 1), PushFilterObj[str])
    assert_type(PushReduceObj(lengths, add), PushReduceObj[str, int])
    assert_type(PushReduceObj(lengths, add_later), PushReduceObj[str, int])
    PushMapObj(texts, length)  # type: ignore[arg-type]
    PushReduceObj(texts, add)  # type: ignore[arg-type]


def chains() -> None:
    chain = PullChain(SourceBufferObj(["a", "bb"], True))
    assert_type(chain.map(length), PullChain[int])
    assert_type(chain.map(shout), PullChain[str])
    assert_type(chain.map(length).map(lambda n: n / 2), PullChain[float])
    chain.map(length).map(shout)  # type: ignore[arg-type]


def push_builder() -> None:
    builder: PushChainBuilder[str, str] = PushChainBuilder.start()
    assert_type(builder.map(length), PushChainBuilder[str, int])
    assert_type(builder.map(shout), PushChainBuilder[str, str])
    assert_type(builder.map(length).map(lambda n: n / 2), PushChainBuilder[str, float])
    builder.map(length).map(shout)  # type: ignore[arg-type]
