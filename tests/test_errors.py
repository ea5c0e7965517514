"""The one error formatter: every exception the operator sees becomes one line the same way."""

from __future__ import annotations

import errno

from fbupscale_gui.core.errors import InputImageError, RequestError, error_line


def test_an_os_error_names_its_file_and_reason() -> None:
    exc = FileNotFoundError(errno.ENOENT, "No such file or directory", "/clips/a.mp4")
    assert error_line(exc) == "/clips/a.mp4: No such file or directory"
    assert error_line(exc, where=False) == "No such file or directory"
    assert error_line(OSError("disk on fire")) == "disk on fire"


def test_our_errors_read_as_their_message_on_one_line() -> None:
    assert error_line(RequestError("bad\n  steps:\tmust be 1-100")) == "bad steps: must be 1-100"
    # ours stay ours even when they are also a built-in type (never "unexpected")
    assert error_line(InputImageError("x.png", "no such file"), unexpected=True) == (
        "x.png: no such file"
    )


def test_an_unexpected_error_is_marked_as_a_bug() -> None:
    assert error_line(KeyError("k"), unexpected=True) == (
        "unexpected error (KeyError: 'k'); the details are in the log"
    )
    assert error_line(KeyError("k")) == "'k'"


def test_an_empty_message_is_the_type_name_and_long_lines_are_cut() -> None:
    assert error_line(ValueError()) == "ValueError"
    line = error_line(ValueError("x" * 500), limit=200)
    assert len(line) == 200 and line.endswith("…")
    assert error_line(ValueError("short"), limit=200) == "short"
