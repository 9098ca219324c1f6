"""The process executor's wire: frames over a pipe, and runs of INTERMEDIATE values."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pullpush.executors.process import _protocol as wire


@pytest.fixture
def pipe() -> Iterator[tuple[wire.FrameReader, wire.FrameWriter]]:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    try:
        yield wire.FrameReader(read_fd), wire.FrameWriter(write_fd)
    finally:
        os.close(read_fd)
        os.close(write_fd)


def messages(reader: wire.FrameReader) -> list[tuple[object, ...]]:
    frames, eof = reader.read()
    assert not eof
    return [tuple(m) for frame in frames for m in frame]


def test_queued_messages_travel_as_one_frame(
    pipe: tuple[wire.FrameReader, wire.FrameWriter],
) -> None:
    reader, writer = pipe
    writer.send((wire.CALL, 1, 7, ("a",)))
    writer.send((wire.CANCEL, 1))
    assert writer.flush()
    frames, _ = reader.read()
    assert frames == [[(wire.CALL, 1, 7, ("a",)), (wire.CANCEL, 1)]]


def test_consecutive_values_of_one_task_share_one_message(
    pipe: tuple[wire.FrameReader, wire.FrameWriter],
) -> None:
    reader, writer = pipe
    writer.send_intermediates(3, [1, 2])
    writer.send_intermediates(3, [3])
    writer.send_intermediates(4, ["x"])
    writer.send_intermediates(3, [4])
    writer.flush()
    assert messages(reader) == [
        (wire.INTERMEDIATE, 3, [1, 2, 3]),
        (wire.INTERMEDIATE, 4, ["x"]),
        (wire.INTERMEDIATE, 3, [4]),
    ]


def test_a_run_never_grows_past_another_message(
    pipe: tuple[wire.FrameReader, wire.FrameWriter],
) -> None:
    # Order is per message: a value queued after the task's FINAL (or any message)
    # must not join a run queued before it.
    reader, writer = pipe
    writer.send_intermediates(3, [1])
    writer.send((wire.INTERMEDIATE_BLOB, 3, b"blob", "Thing"))
    writer.send_intermediates(3, [2])
    writer.flush()
    writer.send_intermediates(3, [3])  # a flush ends every run too
    writer.flush()
    assert messages(reader) == [
        (wire.INTERMEDIATE, 3, [1]),
        (wire.INTERMEDIATE_BLOB, 3, b"blob", "Thing"),
        (wire.INTERMEDIATE, 3, [2]),
        (wire.INTERMEDIATE, 3, [3]),
    ]


def test_a_frame_split_across_reads_is_decoded_once_complete(
    pipe: tuple[wire.FrameReader, wire.FrameWriter],
) -> None:
    reader, writer = pipe
    head, payload = wire.encode_frame([(wire.STOP,)])
    os.write(writer.fd, head + payload[:3])
    assert reader.read() == ([], False)
    os.write(writer.fd, payload[3:])
    assert reader.read() == ([[(wire.STOP,)]], False)


@pytest.mark.timeout(30)
def test_frames_across_many_reads_come_whole_and_in_order(
    pipe: tuple[wire.FrameReader, wire.FrameWriter],
) -> None:
    """The reader reuses one buffer for its reads: a frame cut by a read's end, or
    larger than a read, is kept and completed by the next reads."""
    reader, writer = pipe
    sent = [(wire.CREDIT, i, b"v" * (i * 997 % 5000)) for i in range(400)]
    sent.append((wire.DEFINE, 1, b"w" * (600 * 1024)))  # over a read, under a frame of its own
    sent += [(wire.CANCEL, i) for i in range(50)]
    received: list[object] = []
    for start in range(0, len(sent), 37):
        for message in sent[start : start + 37]:
            writer.send(message)
        writer.flush()
        while writer.pending:
            received += messages(reader)
            writer.write_pending()
    received += messages(reader)
    assert received == sent


def test_a_full_pipe_keeps_the_rest_for_later(
    pipe: tuple[wire.FrameReader, wire.FrameWriter],
) -> None:
    reader, writer = pipe
    big = b"x" * (4 << 20)  # more than any pipe buffer
    writer.send((wire.DEFINE, 1, big))
    assert not writer.flush() and writer.pending
    received: list[object] = []
    while writer.pending or not received:
        frames, _ = reader.read()
        received += [m for frame in frames for m in frame]
        writer.write_pending()
    assert received == [(wire.DEFINE, 1, big)]


def test_reading_a_closed_pipe_reports_eof() -> None:
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    try:
        assert wire.FrameReader(read_fd).read() == ([], True)
    finally:
        os.close(read_fd)
