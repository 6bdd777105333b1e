"""etcdctl's exit codes, and the exception that ends a synodctl command with one of them."""

from __future__ import annotations

EXIT_SUCCESS = 0
EXIT_ERROR = 1
EXIT_BAD_CONNECTION = 2
EXIT_INVALID_INPUT = 3  # malformed txn input
EXIT_BAD_FEATURE = 4  # a valid flag with an unsupported value
EXIT_INTERRUPTED = 5
EXIT_IO = 6
EXIT_BAD_ARGS = 128
EXIT_PANIC = 2  # what a Go panic exits with (etcdctl panics on an unknown txn compare operator)


class CtlExit(Exception):
    """Stop the command: print ``Error: <message>`` on stderr (unless ``raw``) and exit with ``code``."""

    def __init__(self, code: int, message: str, *, raw: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # Text written to stderr verbatim instead of the "Error: " line.
        self.raw = raw

    def stderr_text(self) -> str:
        return self.raw if self.raw is not None else f"Error: {self.message}\n"
