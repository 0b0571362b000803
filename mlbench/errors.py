"""One exception type for problems the user can fix, reported as one line."""

import errno
import lzma
import os
import re
import zipfile
import zlib

# What reading a damaged or unsupported zip archive (an .npz) raises besides OSError and
# ValueError: zipfile's own error, its refusals of features it does not implement (a compression
# method, a zip version, flag bits), an encrypted member (RuntimeError: password required), and
# the decompressors' errors.
ZIP_READ_ERRORS = (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error, lzma.LZMAError)


class MlbenchError(Exception):
    """A user-facing error: bad config, missing data, corrupt artifact.

    The CLI prints ``error: <message>`` and exits non-zero, without a traceback.
    """


class VariantFailed(MlbenchError):
    """A deployment variant could not be built or evaluated; other variants go on."""


class NotApplicable(Exception):
    """A step does not apply to this artifact or data (the reason is recorded, not raised to
    the user): weight faults on packed quantized weights, a stressor on an ONNX-only model."""


# errno values that mean the environment, not the input, is at fault when writing: a full disk
# or quota, a read-only folder, missing permission
WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT})


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def environment_error(e: BaseException) -> OSError | None:
    """``e`` as an OSError when it says the environment failed a write (full disk, quota,
    read-only folder, no permission), else None. Besides OSError itself this recognises the
    libraries that report such a failure in their own types with the OS error's code (safetensors'
    ``SafetensorError: ... (os error 28)``, Rust's ``Os { code: 28, ... }``); the cause chain is
    followed. Writers whose errors carry no code convert them where they write
    (:func:`mlbench.train.cache.save_weights`)."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError) and e.errno in WRITE_ERRORS:
            return e
        m = re.search(r"Os \{ code: (\d+)|\(os error (\d+)\)", str(e))
        code = int(m.group(1) or m.group(2)) if m else None
        if code in WRITE_ERRORS:
            return OSError(code, os.strerror(code))
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None
