"""The one exception type users see: its message is the whole, single-paragraph report."""


class OlmirrorError(Exception):
    """An error caused by input or by a host, reported without a traceback."""


class SpecError(OlmirrorError):
    """The spec file is unreadable or invalid; nothing has touched any host."""


class Unreachable(OlmirrorError):
    """The host could not be reached, refused us, or the connection was lost."""
