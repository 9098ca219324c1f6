"""The chunk analysis: the task runner each chunk gets, and the merge of the results.

:func:`analyse_chunk` is a module-level sync generator, so worker processes import it
by name; a task is ``functools.partial(analyse_chunk, index, text)``, which sends the
function to each worker once and the chunk's text once. It yields one progress value
per stage (INTERMEDIATE envelopes) and returns a compact :class:`ChunkResult` of plain
dicts (the FINAL envelope).

:class:`Totals` merges results in any order to the same answer: counts are sums, and
the combined hash is taken over the chunk digests sorted by chunk index.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter
from collections.abc import Generator
from typing import TypedDict

__all__ = ["STAGES", "ChunkResult", "Totals", "analyse_chunk"]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

TOP_BIGRAMS_PER_CHUNK = 100
"""Each chunk counts all its bigrams and returns its most common ones (see Totals)."""

STAGES = ("tokenised", "counted words", "counted bigrams", "hashed")
"""What :func:`analyse_chunk` yields, in order: one INTERMEDIATE envelope each."""


class ChunkResult(TypedDict):
    """What one chunk's analysis returns: small, picklable, plain data."""

    index: int
    chars: int
    tokens: int
    words: dict[str, int]
    bigrams: dict[str, int]
    digest: str


def analyse_chunk(index: int, text: str) -> Generator[str, None, ChunkResult]:
    """Analyse one chunk, yielding the name of each stage as it completes.

    Tokenise (lower-cased words), count words, count bigrams (pairs of adjacent words
    within the chunk), hash the text with BLAKE2b.

    Args:
        index: the chunk's position in the document, from 0.
        text: the chunk.

    Returns:
        The chunk's word counts, its ``TOP_BIGRAMS_PER_CHUNK`` most common bigrams
        and its digest.
    """
    tokens = _WORD.findall(text.lower())
    yield STAGES[0]
    words = Counter(tokens)
    yield STAGES[1]
    pairs = Counter(itertools.pairwise(tokens))
    bigrams = {f"{a} {b}": n for (a, b), n in pairs.most_common(TOP_BIGRAMS_PER_CHUNK)}
    yield STAGES[2]
    digest = hashlib.blake2b(text.encode(), digest_size=32).hexdigest()
    yield STAGES[3]
    return {
        "index": index,
        "chars": len(text),
        "tokens": len(tokens),
        "words": dict(words),
        "bigrams": bigrams,
        "digest": digest,
    }


class Totals:
    """The merged results of every chunk; the same whatever order they arrive in.

    Word counts are exact. Bigram counts are the sums of each chunk's top list (a
    map-side top-k, which keeps results small). A chunk whose list is full may hold a
    bigram it did not list at most as often as its list's last count, so each total
    comes with an upper bound; the two are equal when the count is exact.
    """

    def __init__(self) -> None:
        self.chunks = 0
        self.chars = 0
        self.tokens = 0
        self.words: Counter[str] = Counter()
        self.bigrams: Counter[str] = Counter()
        # Upper bounds: the sum of every full list's last count, minus that sum over
        # the lists that do name a bigram.
        self._thresholds = 0
        self._listed_thresholds: Counter[str] = Counter()
        self._digests: dict[int, str] = {}

    def add(self, result: ChunkResult) -> None:
        """Merge one chunk's result."""
        index = result["index"]
        if index in self._digests:
            raise ValueError(f"chunk {index} was merged twice")
        self._digests[index] = result["digest"]
        self.chunks += 1
        self.chars += result["chars"]
        self.tokens += result["tokens"]
        self.words.update(result["words"])
        self.bigrams.update(result["bigrams"])
        bigrams = result["bigrams"]
        if len(bigrams) >= TOP_BIGRAMS_PER_CHUNK:
            threshold = min(bigrams.values())
            self._thresholds += threshold
            for bigram in bigrams:
                self._listed_thresholds[bigram] += threshold

    def digest(self) -> str:
        """BLAKE2b over the chunk digests in document order (independent of the order
        the results arrived in)."""
        combined = hashlib.blake2b(digest_size=32)
        for index in sorted(self._digests):
            combined.update(bytes.fromhex(self._digests[index]))
        return combined.hexdigest()

    def top_words(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` most common words, ties broken alphabetically."""
        return sorted(self.words.items(), key=lambda item: (-item[1], item[0]))[:n]

    def top_bigrams(self, n: int) -> list[tuple[str, int, int]]:
        """The ``n`` most common bigrams as ``(bigram, count, upper_bound)``."""
        ranked = sorted(self.bigrams.items(), key=lambda item: (-item[1], item[0]))[:n]
        return [
            (b, count, count + self._thresholds - self._listed_thresholds[b]) for b, count in ranked
        ]

    def same_as(self, other: Totals) -> bool:
        """Whether ``other`` holds exactly the same results."""
        return (
            self.chunks == other.chunks
            and self.chars == other.chars
            and self.tokens == other.tokens
            and self.words == other.words
            and self.bigrams == other.bigrams
            and self._digests == other._digests
        )
