"""The error every domain operation raises for an operation that cannot be done."""

from __future__ import annotations


class AccountError(Exception):
    """An operation cannot be done (unknown account, duplicate name, bad amount).

    `status` is the HTTP status the admin API answers with: 400 bad input, 404 unknown,
    409 conflict with existing state.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
