"""Readers for assay exports and sample manifests: bytes in, canonical frames out.

:func:`read_file` detects the layout from the content (not the file name) and returns a
:class:`ReadResult`: the canonical measurement rows (``transforms.schema.MEASUREMENT``), the rows it held
back with a reason (``transforms.schema.QUARANTINE``) and, for manifests, the sample rows. The ledger
identity ``rows_read == rows.height + quarantine.height`` holds for every result.
"""

from transforms.readers.detect import ReaderFailure, ReadResult, detect_layout, read_file, read_or_refuse
from transforms.text import UnreadableFileError

__all__ = ["ReadResult", "ReaderFailure", "UnreadableFileError", "detect_layout", "read_file", "read_or_refuse"]
