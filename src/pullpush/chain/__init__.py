"""Fluent chains: pull chains, push chain recipes, compiled pull and push chains,
bidirectional chains."""

# chains
from ._bidi import BidiProcessor as BidiProcessor
from ._bidi import BidiProcessorFactory as BidiProcessorFactory
from ._bidi import BidirectionalChain as BidirectionalChain
from ._compile import CompiledPushChain as CompiledPushChain
from ._ops import PushOpDescriptor as PushOpDescriptor
from ._pull import PullChain as PullChain
from ._pull_compile import CompiledPullChain as CompiledPullChain
from ._pull_ops import PullOpDescriptor as PullOpDescriptor
from ._push import PushChain as PushChain
from ._push import PushChainBuilder as PushChainBuilder
from ._push import ToArrayResult as ToArrayResult

__all__ = (
    # chains
    "BidiProcessor",
    "BidiProcessorFactory",
    "BidirectionalChain",
    "CompiledPushChain",
    "PushChain",
    "PushChainBuilder",
    "PushOpDescriptor",
    "ToArrayResult",
    "PullChain",
    "CompiledPullChain",
    "PullOpDescriptor",
)
