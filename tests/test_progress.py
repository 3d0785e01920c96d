"""Progress in logs: plain periodic lines with counts, rates and time left when stderr is not a terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from semzip.progress import PlainProgress, progress_bar


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_every_interval_with_counts_rate_and_time_left():
    clock, out = Clock(), io.StringIO()
    p = PlainProgress(40, "decoding", out, interval=10.0, clock=clock)
    for _ in range(4):  # 4 items in 8 s: no line yet
        clock.t += 2
        p.advance(1)
    assert out.getvalue() == ""
    clock.t += 2
    p.describe("jpeg/q10")
    p.advance(1)  # 5 items in 10 s
    clock.t += 5
    p.advance(2)  # 7 items in 15 s: within the interval of the last line
    clock.t += 10
    p.advance(3)  # 10 items in 25 s
    p.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "decoding: 5/40 (12%), 2.0 s each, 10 s elapsed, about 1 min 10 s left [jpeg/q10]",
        "decoding: 10/40 (25%), 2.5 s each, 25 s elapsed, about 1 min 15 s left [jpeg/q10]",
        "decoding: 10/40 (25%) done in 25 s (2.5 s each)",
    ]


def test_slow_items_are_reported_per_item():
    clock, out = Clock(), io.StringIO()
    p = PlainProgress(3, "evaluating", out, interval=10.0, clock=clock)
    clock.t += 1
    p.advance(0)
    assert out.getvalue() == ""
    clock.t += 90
    p.advance(1)
    assert "1/3 (33%), 1 min 31 s each" in out.getvalue() and "about 3 min 02 s left" in out.getvalue()
    clock.t += 1
    p.advance(1)
    p.close()
    assert out.getvalue().splitlines()[-1] == "evaluating: 2/3 (67%) done in 1 min 32 s (46 s each)"
    fast = io.StringIO()
    q = PlainProgress(None, "embedding", fast, interval=0, clock=clock)
    clock.t += 2
    q.advance(300)
    assert fast.getvalue() == "embedding: 300, 150/s, 2.0 s elapsed\n"


def test_short_runs_stay_silent_and_failures_print_no_done_line():
    out = io.StringIO()
    with progress_bar(5, "quick", console=Console(file=out), interval=60) as advance:
        advance(5)
    assert out.getvalue() == ""
    with pytest.raises(RuntimeError), progress_bar(5, "failing", console=Console(file=out), interval=0) as advance:
        advance(1)
        raise RuntimeError("boom")
    assert out.getvalue().splitlines()[0].startswith("failing: 1/5 (20%)") and "done" not in out.getvalue()
    with progress_bar(5, "off", console=Console(file=out), interval=0, enabled=False) as advance:
        advance(5)
    assert "off" not in out.getvalue()


def test_cli_decompress_reports_progress_when_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from semzip.api import compress_folder
    from semzip.cli import app
    from semzip.data.scenes import write_scenes

    write_scenes(tmp_path / "imgs", n=6, seed=4, size=(48, 32))
    compress_folder(tmp_path / "imgs", tmp_path / "c.smz", encoder="thumbnail", use_cache=False, n_atoms=4,
                    sparsity=2)
    monkeypatch.setenv("SEMZIP_PROGRESS_INTERVAL", "0")
    r = CliRunner().invoke(app, ["decompress", str(tmp_path / "c.smz"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "generating images: 6/6 (100%)" in r.output and "generating images: 6/6 (100%) done in" in r.output


def test_cli_eval_reports_each_rate_point_in_logs(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from semzip.cli.eval import app
    from semzip.data.scenes import write_scenes

    write_scenes(tmp_path / "scenes", 3, size=(64, 48))
    monkeypatch.setenv("SEMZIP_PROGRESS_INTERVAL", "0")
    r = CliRunner().invoke(app, ["--dataset", str(tmp_path / "scenes"), "--out", str(tmp_path / "ev"),
                                 "--codecs", "jpeg", "--metrics", "psnr", "--qualities", "jpeg=10,40"])
    assert r.exit_code == 0, r.output
    assert "evaluating rate points: 1/2 (50%)" in r.output and "[jpeg/" in r.output
    assert "evaluating rate points: 2/2 (100%) done in" in r.output
