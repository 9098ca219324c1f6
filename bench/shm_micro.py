"""The payload path alone: a call's large buffer through the call pipe (frames written
with ``writev``, read into exact-size buffers) against the shared-memory arena (one
copy in, a reference in the pipe, one copy out), between this process and one child.

    python bench/shm_micro.py [--mib 1024] [--chunk-kib 4096] [--ahead 2] [--rounds 3]
        [--work none|blake2b] [--threshold-kib N]

The child decodes each call (``bytes`` arrive as ``bytes``), optionally hashes it
(``--work blake2b``), and answers with a small DONE; the parent keeps ``--ahead`` calls
in flight (like a worker's running task plus one prefetched). Prints, per path, the
median wall time, the parent's CPU seconds per GiB and the child's CPU seconds per GiB.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import selectors
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from pullpush.executors.process import _forks, _shm
from pullpush.executors.process import _pickling as pickling
from pullpush.executors.process import _protocol as wire

DONE = 99


def child(call_fd: int, result_fd: int, handle: Any, work: str) -> None:
    _shm.attach(handle)
    os.set_blocking(call_fd, False)
    reader = wire.FrameReader(call_fd)
    writer = wire.FrameWriter(result_fd)
    selector = selectors.DefaultSelector()
    selector.register(call_fd, selectors.EVENT_READ)
    while True:
        selector.select()
        frames, eof = reader.read()
        for frame in frames:
            for message in frame:
                blob = message[3]
                if _shm.is_placed(blob):
                    (chunk,), _ = _shm.loads_placed(blob)
                else:
                    (chunk,), _ = pickling.loads_blob(blob)
                assert type(chunk) is bytes
                if work == "blake2b":
                    hashlib.blake2b(chunk).digest()
                writer.send((DONE, message[1]))
        os.set_blocking(result_fd, True)
        writer.flush()
        if eof:
            return


def run(path: str, mib: int, chunk: int, ahead: int, work: str) -> tuple[float, float, float]:
    context = multiprocessing.get_context("fork")
    call_r, call_w = os.pipe()
    result_r, result_w = os.pipe()
    wire.set_pipe_size(call_w)
    wire.set_pipe_size(result_w)
    arena = _shm.Arena() if path == "shm" else None
    handle = arena.handle() if arena is not None else None
    cpu_r, cpu_w = os.pipe()
    process = context.Process(
        target=_child_main, args=(call_r, result_w, handle, work, cpu_w, (call_w, result_r, cpu_r))
    )
    # Forked children close the parent's arena fds but those the worker keeps.
    _forks._forking.keep = () if arena is None else {arena.fd}
    try:
        process.start()
    finally:
        _forks._forking.keep = ()
    os.close(call_r)
    os.close(result_w)
    os.close(cpu_w)
    os.set_blocking(call_w, False)
    os.set_blocking(result_r, False)
    data = os.urandom(chunk)
    chunks = [bytes(data[:-1]) + bytes([i % 256]) for i in range(max(1, mib * 2**20 // chunk))]
    writer = wire.FrameWriter(call_w)
    reader = wire.FrameReader(result_r)
    selector = selectors.DefaultSelector()
    selector.register(result_r, selectors.EVENT_READ)
    regions: dict[int, tuple[int, int]] = {}
    sent = done = 0
    cpu, wall = time.process_time(), time.perf_counter()
    while done < len(chunks):
        while sent < len(chunks) and sent - done < ahead:
            blob = pickling.dumps_blob(((pickling.wrap_large(chunks[sent]),), {}))
            placed = arena.place(blob) if arena is not None else None
            if placed is not None:
                blob, offset, size = placed
                regions[sent] = (offset, size)
            message = (wire.CALL_ARGS, sent, 0, blob)
            if not _shm.is_placed(blob) and pickling.is_large(blob):
                writer.send_alone(message)
            else:
                writer.send(message)
            sent += 1
        writer.flush()
        if writer.pending:
            try:
                selector.register(call_w, selectors.EVENT_WRITE)
            except KeyError:
                pass
        for key, _ in selector.select():
            if key.fd == call_w:
                if writer.write_pending():
                    selector.unregister(call_w)
                continue
            frames, _eof = reader.read()
            for frame in frames:
                for message in frame:
                    region = regions.pop(message[1], None)
                    if region is not None and arena is not None:
                        arena.free(*region)
                    done += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    os.close(call_w)
    child_cpu = float(os.read(cpu_r, 100).decode())
    process.join()
    os.close(cpu_r)
    os.close(result_r)
    if arena is not None:
        arena.close()
    gib = len(chunks) * chunk / 2**30
    return wall, cpu / gib, child_cpu / gib


def _child_main(
    call_fd: int, result_fd: int, handle: Any, work: str, cpu_fd: int, parents: tuple[int, ...]
) -> None:
    for fd in parents:  # the parent's ends (inherited): EOF must reach this child
        os.close(fd)
    cpu = time.process_time()
    try:
        child(call_fd, result_fd, handle, work)
    finally:
        os.write(cpu_fd, str(time.process_time() - cpu).encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--chunk-kib", type=int, default=4096)
    parser.add_argument("--ahead", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", choices=["none", "blake2b"], default="none")
    parser.add_argument(
        "--threshold-kib",
        type=int,
        default=None,
        help="the out-of-band threshold of the shm path (default: the library's)",
    )
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float]]] = {"pipe": [], "shm": []}
    for round_ in range(args.rounds):
        for path in ("pipe", "shm") if round_ % 2 == 0 else ("shm", "pipe"):
            results[path].append(run(path, args.mib, args.chunk_kib * 1024, args.ahead, args.work))
    print(f"{args.mib} MiB in {args.chunk_kib} KiB chunks, {args.ahead} ahead, work={args.work}")
    for path, rows in results.items():
        wall, parent, child_ = (statistics.median(column) for column in zip(*rows, strict=True))
        print(
            f"  {path:4}  wall {wall:6.3f} s  parent CPU {parent:5.3f} s/GiB  "
            f"child CPU {child_:5.3f} s/GiB"
        )


if __name__ == "__main__":
    main()
