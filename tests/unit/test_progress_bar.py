"""Progress on a terminal is a bar; in a file or a CI log it is a line per stage, never the
bar's carriage-return frames."""

import io

from streamae.core.progress_bar import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(stream, enabled=True) -> list[int]:
    bar = Progress(range(5), "training dense", "epoch", enabled, stream)
    seen = []
    for i in bar:
        bar.set_postfix_str(f"val={i / 10:.1f}")
        seen.append(i)
        if i == 3:
            bar.write("candidate done")
            break
    bar.close()
    bar.close()  # closing twice writes nothing more
    return seen


def test_a_log_gets_a_line_when_a_stage_starts_and_when_it_ends():
    log = io.StringIO()
    assert run(log) == [0, 1, 2, 3]
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0] == "training dense: started (5 epochs at most)"
    assert lines[1] == "candidate done"
    assert lines[2].startswith("training dense: 4 epochs in ") and lines[2].endswith(", last: val=0.3")
    assert len(lines) == 3


def test_a_terminal_gets_a_bar():
    tty = Terminal()
    run(tty)
    out = tty.getvalue()
    assert "\r" in out and "training dense" in out and "candidate done" in out
    assert "started" not in out


def test_disabled_shows_nothing():
    for stream in (io.StringIO(), Terminal()):
        assert run(stream, enabled=False) == [0, 1, 2, 3]
        assert stream.getvalue() == ""
