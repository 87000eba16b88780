"""TensorBoard logdirs: every directory holding event files is one run, with all its scalars.

Records are read with TensorBoard's own record reader (its pure-Python `PyRecordReader_New`, the
one `EventFileLoader` uses without TensorFlow) rather than through `EventFileLoader`, because the
loader swallows data loss: a garbage or corrupt file would read as an empty run, and a truncated
one as a shorter run, with no word said. Here a record that fails its CRC, or a truncated record
in a source that is not growing, refuses that run with the reason; only the newest file of a
growing run may end in a partly written record, which is then left for a later import.

Scalars come in two forms, both taken: the legacy `simple_value` (what `SummaryWriter.add_scalar`
writes by default) and a 0-d tensor whose tag's first value carried the `scalars` plugin's
metadata (`add_scalar(new_style=True)`, `tf.summary.scalar` in TF 2): TensorBoard's own rule,
since only a tag's first value carries its metadata. Other summaries (histograms, images, text,
hparams) are left out. Each event keeps its step and its own wall time.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from pathlib import Path

from google.protobuf.message import DecodeError
from tensorboard.backend.event_processing.io_wrapper import IsTensorFlowEventsFile
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New
from tensorboard.util import tensor_util

from trainlight.integrations.importers.source import (
    EventsBuilder,
    RunFailure,
    ScalarEvents,
    SourceError,
    SourceRun,
    is_growing,
)

KIND = "tensorboard"
SCALARS_PLUGIN = "scalars"
_TRUNCATED = "truncated record"  # the stub reader's word for a record cut short


class UnreadableRun(Exception):
    """An event file of the run could not be read; the message is one line."""


def read_logdir(logdir: Path, project: str | None, now: float) -> Iterator[SourceRun | RunFailure]:
    """The runs under `logdir` in path order, each read or refused on its own."""
    root = logdir.expanduser().resolve()
    if not root.is_dir():
        raise SourceError(f"{logdir} is not a directory")
    found = find_runs(root)
    if not found:
        raise SourceError(f"no TensorBoard event files (*tfevents*) under {logdir}")
    for path, files in found:
        name = root.name if path == "." else path
        try:
            growing = is_growing([f.stat().st_mtime for f in files], now)
            events = read_events(files, growing)
        except (UnreadableRun, OSError) as exc:
            yield RunFailure(name, str(exc))
            continue
        yield SourceRun(
            kind=KIND,
            source=root,
            path=path,
            name=name,
            project=project or root.name,
            events=events,
            growing=growing,
            group="" if path == "." else posixpath.dirname(path),
        )


def find_runs(root: Path) -> list[tuple[str, list[Path]]]:
    """(run path relative to `root`, its event files in name order), in path order.

    Event file names start with their creation time, so name order is write order."""
    runs = []
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        names = sorted(f for f in files if IsTensorFlowEventsFile(f))
        if names:
            path = Path(directory).relative_to(root).as_posix()
            runs.append((path, [Path(directory, f) for f in names]))
    return sorted(runs, key=lambda run: run[0])


def read_events(files: list[Path], growing: bool) -> ScalarEvents:
    """The scalar events of a run's event files, file after file, record after record."""
    builder = EventsBuilder()
    plugins: dict[str, str] = {}  # tag -> plugin named by its first value's metadata
    for index, path in enumerate(files):
        tolerate_truncation = growing and index == len(files) - 1
        for record in _records(path, tolerate_truncation):
            try:
                event = event_pb2.Event.FromString(record)
            except DecodeError as exc:
                raise UnreadableRun(f"{path.name}: a record is not an event ({exc})") from None
            _take(event, plugins, builder)
    return builder.build()


def _records(path: Path, tolerate_truncation: bool) -> Iterator[bytes]:
    try:
        reader = PyRecordReader_New(str(path), 0, b"", None)
    except errors.OpError as exc:
        raise UnreadableRun(f"{path.name}: {exc.message}") from None
    count = 0
    try:
        while True:
            try:
                reader.GetNext()
            except errors.OutOfRangeError:
                return
            except errors.DataLossError as exc:
                if tolerate_truncation and _TRUNCATED in exc.message:
                    return  # still being written: the rest waits for a later import
                detail = exc.message.replace(str(path), "").strip()
                raise UnreadableRun(
                    f"{path.name}: not a readable event file ({detail}, after {count} records)"
                ) from None
            except (MemoryError, OverflowError):  # a length field no real record has
                raise UnreadableRun(
                    f"{path.name}: not a readable event file (a record claims an impossible "
                    f"length, after {count} records)"
                ) from None
            count += 1
            yield reader.record()
    finally:
        reader.file_handle.close()


def _take(event: event_pb2.Event, plugins: dict[str, str], builder: EventsBuilder) -> None:
    if event.WhichOneof("what") != "summary":
        return
    for value in event.summary.value:
        if value.tag not in plugins:
            plugins[value.tag] = value.metadata.plugin_data.plugin_name
        number = _scalar(value, plugins[value.tag])
        if number is not None:
            builder.add(int(event.step), value.tag, number, float(event.wall_time))


def _scalar(value: summary_pb2.Summary.Value, plugin: str) -> float | None:
    """The value's number if it is a scalar summary, else None."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind != "tensor" or plugin != SCALARS_PLUGIN:
        return None
    tensor = value.tensor
    if not tensor.tensor_shape.dim and len(tensor.float_val) == 1:
        return float(tensor.float_val[0])  # the common case, without building an array
    array = tensor_util.make_ndarray(tensor)
    return float(array.reshape(-1)[0]) if array.size == 1 else None
