"""One exception type for problems the user can fix, reported as one line."""


class MlbenchError(Exception):
    """A user-facing error: bad config, missing data, corrupt artifact.

    The CLI prints ``error: <message>`` and exits non-zero, without a traceback.
    """


class VariantFailed(MlbenchError):
    """A deployment variant could not be built or evaluated; other variants go on."""
