"""The demo's input: a deterministic built-in corpus, or a user's text file, cut into
chunks lazily.

The built-in corpus is generated in-process, with no download: English function words
(determiners, prepositions, pronouns, conjunctions) and made-up nouns, verbs and
adjectives built from syllables with Zipf-like frequencies, put together by a small
grammar into a pool of sentences; pages are seeded draws from that pool.
Page ``i`` depends only on the seed and ``i``, so the document is the same whatever the
chunk size, and it is produced page by page: hundreds of MiB never sit in memory.

Both sources go through :func:`rechunk`, which cuts text into chunks of about
``chunk_chars`` characters at whitespace, so no word is split between two chunks.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path

__all__ = ["CorpusSpec", "corpus_chunks", "file_chunks", "rechunk"]

# Function words with rough relative frequencies; content words are made up.
_DETERMINERS = {
    "the": 60,
    "a": 22,
    "this": 5,
    "that": 4,
    "every": 2,
    "some": 3,
    "its": 2,
    "their": 3,
    "our": 2,
    "no": 1,
}
_PREPOSITIONS = {
    "of": 40,
    "in": 25,
    "to": 18,
    "for": 12,
    "on": 10,
    "with": 10,
    "at": 6,
    "from": 6,
    "by": 6,
    "about": 3,
    "into": 3,
    "over": 2,
    "after": 2,
}
_PRONOUNS = {"it": 12, "they": 8, "we": 6, "she": 6, "he": 6, "you": 5, "i": 5}
_CONJUNCTIONS = {"and": 30, "but": 8, "or": 5, "so": 4, "because": 3, "when": 3, "while": 2}
_ADVERBS = {"very": 5, "also": 5, "then": 4, "now": 3, "just": 3, "only": 3, "never": 2}
_REAL_VERBS = "is was has had made found said came took gave knew saw began kept".split()  # noqa: SIM905
_REAL_ADJECTIVES = "new good old long little great small large early last other".split()  # noqa: SIM905
_SYLLABLES = (  # noqa: SIM905
    "ka lo mi ra te su no vi pe da ri xo bu ze fa gi ho ju le mo an el is or un tra "
    "sel vor min pal dur ken ost"
).split()
_PAGE_CHARS = 64 * 1024
_POOL_SENTENCES = 20_000


class _WordClass:
    """Words drawn by weight (``choices`` with cumulative weights)."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.words = list(weights)
        self.cumulative: list[float] = []
        total = 0.0
        for weight in weights.values():
            total += weight
            self.cumulative.append(total)

    def pick(self, rng: random.Random) -> str:
        return rng.choices(self.words, cum_weights=self.cumulative)[0]


def _made_up(rng: random.Random, count: int, real: list[str], seen: set[str]) -> _WordClass:
    """``real`` words, then made-up ones, with Zipf-like weights (rank r: 1 / (r + 2)**1.05)."""
    words = list(real)
    seen.update(words)
    while len(words) < count:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return _WordClass({w: 1.0 / (rank + 2) ** 1.05 for rank, w in enumerate(words, 1)})


class CorpusSpec:
    """The built-in corpus: ``size`` characters (ASCII, so also bytes) from ``seed``.

    Args:
        size: how many characters the document has (it ends at a whole sentence,
            so it may be a few dozen characters shorter).
        seed: the seed of the vocabulary, the sentences and the pages.
    """

    def __init__(self, size: int, seed: int = 2024) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1 character, got {size}")
        self.size = size
        self.seed = seed
        rng = random.Random(seed)
        seen = set(_DETERMINERS) | set(_PREPOSITIONS) | set(_PRONOUNS)
        seen |= set(_CONJUNCTIONS) | set(_ADVERBS)
        self._det = _WordClass(_DETERMINERS)
        self._prep = _WordClass(_PREPOSITIONS)
        self._pron = _WordClass(_PRONOUNS)
        self._conj = _WordClass(_CONJUNCTIONS)
        self._adv = _WordClass(_ADVERBS)
        self._noun = _made_up(rng, 4000, [], seen)
        self._verb = _made_up(rng, 1500, _REAL_VERBS, seen)
        self._adj = _made_up(rng, 1000, _REAL_ADJECTIVES, seen)
        endings = [".", ".", ".", ".", ".", "?", "!"]
        self._pool = []
        for _ in range(_POOL_SENTENCES):
            words = self._clause(rng)
            if rng.random() < 0.3:
                words += [self._conj.pick(rng), *self._clause(rng)]
            words[0] = words[0].capitalize()
            self._pool.append(" ".join(words) + rng.choice(endings))

    def _noun_phrase(self, rng: random.Random) -> list[str]:
        words = [self._det.pick(rng)]
        if rng.random() < 0.35:
            words.append(self._adj.pick(rng))
        words.append(self._noun.pick(rng))
        return words

    def _clause(self, rng: random.Random) -> list[str]:
        """subject, [adverb], verb, [object], then up to two prepositional phrases."""
        words = [self._pron.pick(rng)] if rng.random() < 0.3 else self._noun_phrase(rng)
        if rng.random() < 0.15:
            words.append(self._adv.pick(rng))
        words.append(self._verb.pick(rng))
        if rng.random() < 0.6:
            words += self._noun_phrase(rng)
        for _ in range(rng.choice((0, 1, 1, 2))):
            words += [self._prep.pick(rng), *self._noun_phrase(rng)]
        return words

    def pages(self) -> Iterator[str]:
        """Yield the document page by page (about 64 KiB each, whole sentences)."""
        pool = self._pool
        mean = sum(len(sentence) + 1 for sentence in pool) / len(pool)
        left = self.size
        index = 0
        while left > 0:
            rng = random.Random(self.seed * 1_000_003 + index)
            target = min(_PAGE_CHARS, left)
            # Draw sentences in batches (much cheaper than one by one), then keep the
            # longest prefix that fits: ends[i] is the length up to sentence i's space.
            picked: list[str] = []
            ends: list[int] = []
            while not ends or ends[-1] < target:
                batch = rng.choices(pool, k=int(target / mean * 1.1) + 8)
                start = ends[-1] if ends else 0
                picked += batch
                ends += itertools.accumulate((len(s) + 1 for s in batch), initial=start)
                del ends[len(ends) - len(batch) - 1]  # the initial value
            count = bisect.bisect_right(ends, target)
            if count == 0:  # not even one sentence fits in what is left
                return
            yield " ".join(picked[:count]) + " "
            left -= ends[count - 1]
            index += 1


class _Cutter:
    """Cut text fed piece by piece into chunks of about ``chunk_chars`` characters.

    A chunk ends at the last whitespace before the limit (the rest carries over to the
    next chunk), so words are never split; a run of 4 KiB without any whitespace is cut
    where it is. Whitespace-only chunks are dropped.
    """

    def __init__(self, chunk_chars: int) -> None:
        self.chunk_chars = chunk_chars
        self._carry = ""

    def feed(self, piece: str) -> list[str]:
        """Add ``piece``; return the chunks it completes."""
        carry = self._carry + piece
        size = self.chunk_chars
        chunks = []
        while len(carry) >= size:
            cut = size
            for index in range(size - 1, max(-1, size - 4096), -1):
                if carry[index].isspace():
                    cut = index + 1
                    break
            chunk, carry = carry[:cut], carry[cut:]
            if not chunk.isspace():
                chunks.append(chunk)
        self._carry = carry
        return chunks

    def finish(self) -> list[str]:
        """The last, shorter chunk (if any text is left)."""
        carry, self._carry = self._carry, ""
        return [carry] if carry and not carry.isspace() else []


def rechunk(pieces: Iterable[str], chunk_chars: int) -> Iterator[str]:
    """Cut a stream of text pieces into chunks of about ``chunk_chars`` characters, at
    whitespace (see :class:`_Cutter`)."""
    cutter = _Cutter(chunk_chars)
    for piece in pieces:
        yield from cutter.feed(piece)
    yield from cutter.finish()


async def corpus_chunks(spec: CorpusSpec, chunk_chars: int) -> AsyncIterator[str]:
    """The built-in corpus, chunk by chunk, generated as the consumer asks for it."""
    for chunk in rechunk(spec.pages(), chunk_chars):
        yield chunk
        await asyncio.sleep(0)  # let the runner hand out work between two chunks


async def file_chunks(path: Path, chunk_chars: int) -> AsyncIterator[str]:
    """A UTF-8 text file (undecodable bytes replaced), chunk by chunk.

    Each block is read in a thread, so reading never blocks the event loop; the file
    is read only as fast as the consumer takes chunks.
    """
    handle = await asyncio.to_thread(open, path, encoding="utf-8", errors="replace")
    try:
        cutter = _Cutter(chunk_chars)
        while True:
            block = await asyncio.to_thread(handle.read, chunk_chars)
            if not block:
                break
            for chunk in cutter.feed(block):
                yield chunk
        for chunk in cutter.finish():
            yield chunk
    finally:
        handle.close()
