"""The chunk-analysis demo: ``python -m pullpush.demo`` or ``pullpush-demo``.

A deterministic built-in corpus (or a user's file) is cut into chunks by an
async-generator task source while a :class:`~pullpush.HierarchicalTaskPoolRunner`
analyses earlier chunks with a sync-generator task runner, inline, in threads or in
worker processes; the modes are timed and their results checked to be identical.
"""

from ._analysis import ChunkResult as ChunkResult
from ._analysis import Totals as Totals
from ._analysis import analyse_chunk as analyse_chunk
from ._cli import main as main
from ._corpus import CorpusSpec as CorpusSpec
from ._corpus import corpus_chunks as corpus_chunks
from ._corpus import file_chunks as file_chunks
from ._run import ModeRun as ModeRun
from ._run import run_mode as run_mode

__all__ = (
    "ChunkResult",
    "CorpusSpec",
    "ModeRun",
    "Totals",
    "analyse_chunk",
    "corpus_chunks",
    "file_chunks",
    "main",
    "run_mode",
)
