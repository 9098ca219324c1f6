from pullpush import PullObj, SourceBufferObj


async def test_buffer_source_yields_in_order() -> None:
    source = SourceBufferObj([1, 2, 3], True)
    assert [x async for x in source] == [1, 2, 3]
    assert source.done
    assert isinstance(source, PullObj)
