"""One exception type for problems the user can fix, reported as one line."""

import lzma
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
