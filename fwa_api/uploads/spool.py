"""A multipart upload streamed to disk: each file part written to a file of its own as it
arrives, never held in memory, with the size limits counted as the bytes come."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from fwa_pipeline.ingest.contract import FILES

# Room for the multipart framing (boundaries, part headers) besides the files themselves.
FRAMING_BYTES = 64 * 1024
# Every contract file once, and as many again for names the loader reports as unknown or
# repeated; more parts than that is not a batch.
MAX_PARTS = 2 * len(FILES)


class TooLarge(Exception):
    def __init__(self, detail: str, file: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.file = file


class BadUpload(Exception):
    pass


class Spooler:
    """python-multipart callbacks writing each file part to a file of its own in ``directory``.

    Callbacks run inside ``parser.write`` and only collect the data; the handler writes it in
    a worker thread after each chunk, so disk writes never block the event loop."""

    def __init__(self, directory: Path, max_file_bytes: int) -> None:
        self.directory = directory
        self.max_file_bytes = max_file_bytes
        # Given file name -> its spooled copy, in arrival order.
        self.files: dict[str, Path] = {}
        self._parts = 0
        self.pending: list[tuple[BinaryIO, bytes]] = []
        self._open: list[BinaryIO] = []
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._size = 0
        self._out: BinaryIO | None = None
        self.complete = False  # the closing boundary was seen

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._disposition = b""
        self._name = ""
        self._size = 0
        self._out = None

    def _end(self) -> None:
        self.complete = True

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        raw = options.get(b"filename")
        if not raw:
            raise BadUpload("every part must be a file with a filename (a contract file name)")
        # Parts are counted, not names: a name can repeat (or look like a renamed repeat).
        if self._parts >= MAX_PARTS:
            raise BadUpload(f"more than {MAX_PARTS} files")
        self._parts += 1
        name = raw.decode("utf-8", "replace")
        # A name given twice keeps both parts, so the loader reports the repetition.
        key = name
        while key in self.files:
            key = f"part{self._parts}/{key}"
        path = self.directory / f"{self._parts}.csv"  # never a client-chosen path
        self._out = path.open("wb")
        self._open.append(self._out)
        self.files[key] = path
        self._name = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        assert self._out is not None  # headers come first
        self._size += end - start
        if self._size > self.max_file_bytes:
            raise TooLarge(
                f"{self._name}: the file is over {self.max_file_bytes:,} bytes, the limit per "
                "file (FWA_MAX_UPLOAD_MB)",
                self._name,
            )
        self.pending.append((self._out, data[start:end]))

    def flush(self) -> None:
        for out, data in self.pending:
            out.write(data)
        self.pending.clear()

    def close(self) -> None:
        for out in self._open:
            out.close()


async def receive(request: Request, boundary: bytes, spooler: Spooler, limit: int) -> None:
    """Stream the body through the parser into the spooler, stopping at ``limit`` bytes."""
    parser = MultipartParser(boundary, spooler.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise TooLarge(f"the upload is over {limit:,} bytes")
            parser.write(chunk)
            if spooler.pending:
                await run_in_threadpool(spooler.flush)
        parser.finalize()
    except MultipartParseError as exc:
        raise BadUpload(f"malformed multipart body: {exc}") from None
    except ClientDisconnect:
        raise BadUpload("the upload was interrupted") from None
    finally:
        spooler.close()
    if not spooler.complete:
        raise BadUpload("the multipart body ends before its closing boundary")


def request_limit(max_file_bytes: int) -> int:
    return max_file_bytes * len(FILES) + FRAMING_BYTES
