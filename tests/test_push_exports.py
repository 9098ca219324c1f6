"""The push operators and chains are exported from every public module that should."""

from __future__ import annotations

import pullpush
import pullpush.chain
import pullpush.pull
import pullpush.push
import pullpush.testing

PUSH = {
    "PushBufferObj",
    "PushBufferReduceObj",
    "PushDistributeObj",
    "PushFilterObj",
    "PushFlatMapObj",
    "PushFlattenObj",
    "PushForkObj",
    "PushLabeledDistributeObj",
    "PushMapObj",
    "PushObj1ToMany",
    "PushObj1ToManyBase",
    "PushObjLabeled1ToMany",
    "PushObjSerial1To1",
    "PushPostCallbacksObj",
    "PushPreCallbacksObj",
    "PushReduceObj",
    "PushRoundRobinObj",
    "PushSerialObj",
    "PushWindowObj",
    "PushWindowTimeoutObj",
    "TimeoutFrom",
    "UNSEEDED",
}
CHAINS = {
    "BidiProcessor",
    "BidiProcessorFactory",
    "BidirectionalChain",
    "CompiledPushChain",
    "PushChain",
    "PushChainBuilder",
    "PushOpDescriptor",
    "ToArrayResult",
}
TEES = {"PullPushBridgeObj", "PullPushDistributeObj"}
ERRORS = {"SinkIndexError", "SinkLabelError"}


def test_submodules_export_their_names() -> None:
    assert set(pullpush.push.__all__) >= PUSH
    assert set(pullpush.chain.__all__) >= CHAINS
    assert set(pullpush.pull.__all__) >= TEES
    assert "RecordingSink" in pullpush.testing.__all__


def test_top_level_exports_everything_and_all_names_resolve() -> None:
    assert set(pullpush.__all__) >= PUSH | CHAINS | TEES | ERRORS
    for module in (pullpush, pullpush.push, pullpush.chain, pullpush.pull, pullpush.testing):
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"
        assert len(module.__all__) == len(set(module.__all__)), module.__name__


def test_errors_subclass_the_builtin_a_user_would_catch() -> None:
    assert issubclass(pullpush.SinkIndexError, IndexError)
    assert issubclass(pullpush.SinkLabelError, KeyError)
    assert issubclass(pullpush.SinkIndexError, pullpush.PullPushError)
