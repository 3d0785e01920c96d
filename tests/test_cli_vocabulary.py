"""One CLI vocabulary (issue 14): every command's --help is checked for the shared option names, and help never
shows Python types. Older spellings keep working as hidden aliases."""

from __future__ import annotations

import re

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

from semzip.cli import app

runner = CliRunner()

# Every command, classified. A new command must be added here, which makes its author decide its vocabulary.
WRITES = {"compress", "embed", "decompress", "blend", "demo", "eval", "train-lic",
          "text compress", "text decompress", "text train"}          # -o/--output
REPLACES = {"compress", "decompress", "blend", "demo", "eval", "train-lic",
            "text compress", "text decompress", "text train"}        # -f/--force
DEVICE = {"compress", "embed", "add", "search", "atoms", "verify", "decompress", "blend", "eval", "train-lic",
          "text compress", "text decompress", "text train"}
READS_ONLY = {"add", "atoms", "search", "info", "verify"}           # no output file or folder of their own
FLAGS = {"embed": "-f/--force allows the store inside the input folder (a store is resumed, never replaced)"}

PYTHON_TYPES = re.compile(r"<(bool|int|float|str|path|Path)>|list\[|<list|dict\[|\bNone\b")


def _commands():
    root = typer.main.get_command(app)
    found = {}

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            full = f"{prefix}{name}"
            if hasattr(cmd, "commands"):
                walk(cmd, full + " ")
            else:
                found[full] = cmd

    walk(root, "")
    return found


COMMANDS = _commands()


def _opts(cmd) -> set[str]:
    return {o for p in cmd.params if not getattr(p, "hidden", False) for o in (*p.opts, *p.secondary_opts)}


def test_every_command_is_classified():
    assert set(COMMANDS) == WRITES | READS_ONLY
    assert not WRITES & READS_ONLY
    assert REPLACES <= WRITES


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_speaks_the_shared_vocabulary(name):
    r = runner.invoke(app, [*name.split(), "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    text = r.output
    assert not PYTHON_TYPES.search(text), f"{name} --help shows a Python type: {PYTHON_TYPES.search(text)[0]!r}"
    opts = _opts(COMMANDS[name])
    if name in WRITES:
        assert {"-o", "--output"} <= opts, f"{name}: outputs are named with -o/--output"
        assert "-o, --output" in text or ("--output" in text and "-o" in text)
    else:
        assert "--output" not in opts
    if name in REPLACES or name in FLAGS:
        assert {"-f", "--force"} <= opts, f"{name}: replacing outputs needs -f/--force"
    if name in DEVICE:
        assert "--device" in opts and "--device" in text
    # older spellings are hidden aliases, never shown; -q means --quality wherever it appears
    assert not opts & {"--out", "--out-dir", "-d", "--dir", "--export", "--embeddings-only"}, name
    if "-q" in opts:
        assert "--quality" in opts, f"{name}: -q is --quality"


def test_root_help_has_no_python_types():
    r = runner.invoke(app, ["--help"], terminal_width=200)
    assert r.exit_code == 0 and not PYTHON_TYPES.search(r.output)


def test_eval_codecs_help_lists_image_text():
    r = runner.invoke(app, ["eval", "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert "image-text" in r.output


# ------------------------------------------------------------------------------------------- behaviour


@pytest.fixture
def sq(tmp_path):
    x = np.random.default_rng(0).standard_normal((20, 16)).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    arc = tmp_path / "a.smz"
    r = runner.invoke(app, ["compress", "--embeddings", str(tmp_path / "e.npy"), "--codec", "sq", "-o", str(arc)])
    assert r.exit_code == 0, r.output
    return arc


def test_embeddings_only_is_a_hidden_spelling_of_a_npy_output(sq, tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    assert runner.invoke(app, ["decompress", str(sq), "-o", str(a)]).exit_code == 0
    assert runner.invoke(app, ["decompress", str(sq), "--embeddings-only", "-o", str(b)]).exit_code == 0
    assert np.array_equal(np.load(a), np.load(b))


def test_device_is_checked_before_any_work(sq, tmp_path):
    r = runner.invoke(app, ["decompress", str(sq), "-o", str(tmp_path / "x"), "--device", "gpu"])
    assert r.exit_code == 2 and "--device must be" in r.output and not (tmp_path / "x").exists()
    r = runner.invoke(app, ["decompress", str(sq), "-o", str(tmp_path / "e.npy"), "-f", "--device", "cuda"])
    assert r.exit_code == 2 and "no model runs" in r.output


def test_offline_generator_refuses_another_device(tmp_path):
    r = runner.invoke(app, ["demo", "-o", str(tmp_path / "d"), "-n", "12"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["decompress", str(tmp_path / "d" / "collection.smz"), "-o", str(tmp_path / "o"),
                            "--device", "cuda"])
    assert r.exit_code == 2 and "runs on the CPU only" in r.output and not (tmp_path / "o").exists()
    r = runner.invoke(app, ["decompress", str(tmp_path / "d" / "collection.smz"), "-o", str(tmp_path / "o"),
                            "--device", "cpu", "--item", "beach_0000.png"])
    assert r.exit_code == 0, r.output


def test_older_spellings_still_work_and_clash_clearly(tmp_path):
    r = runner.invoke(app, ["demo", "--dir", str(tmp_path / "d"), "-n", "12"])
    assert r.exit_code == 0 and (tmp_path / "d" / "collection.smz").is_file()
    r = runner.invoke(app, ["demo", "-o", str(tmp_path / "e"), "--dir", str(tmp_path / "f"), "-n", "12"])
    assert r.exit_code == 2 and "older spelling of -o/--output" in r.output


def test_compress_help_groups_options_per_codec():
    r = runner.invoke(app, ["compress", "--help"], terminal_width=200, env={"COLUMNS": "200"})
    text = r.output
    for panel in ("Output", "Input", "Collection codec", "Scalar-quantisation codec", "Image-text codec",
                  "Image-text decoding settings recorded in the archive", "Collection engine"):
        assert panel in text, panel
    def row(opt: str) -> int:  # where the option's own row starts (other help texts may name it)
        return re.search(rf"^\W*{opt}\b", text, re.MULTILINE).start()

    assert text.index("Image-text codec") < row("--scale") < text.index("Image-text decoding settings")
    assert text.index("Collection engine") < row("--shard-size")
    assert row("--quality") < text.index("Input")  # the rate knob sits with the output


@pytest.fixture
def folder(tmp_path, monkeypatch):
    from semzip.data.scenes import write_scenes

    monkeypatch.setenv("SEMZIP_CACHE", str(tmp_path / "cache"))
    write_scenes(tmp_path / "imgs", n=12, size=(48, 32))
    return tmp_path / "imgs"


def test_device_on_every_command_where_a_model_runs(folder, sq, tmp_path):
    """--device reaches the image encoder (compress, embed, add, search, atoms) and is refused before any work
    where the offline thumbnail encoder or no model at all would run (issue 14)."""
    pytest.importorskip("torch")
    arc = tmp_path / "c.smz"
    r = runner.invoke(app, ["compress", str(folder), "-o", str(arc), "--device", "cuda"])
    assert r.exit_code == 2 and "runs on the CPU only" in r.output and not arc.exists()
    r = runner.invoke(app, ["compress", str(folder), "-o", str(arc), "--device", "gpu"])
    assert r.exit_code == 2 and "--device must be" in r.output
    r = runner.invoke(app, ["compress", str(folder), "-o", str(arc), "--engine", "stream", "--device", "cuda:1"])
    assert r.exit_code == 2 and "runs on the CPU only" in r.output and not arc.exists()
    r = runner.invoke(app, ["compress", "--embeddings", str(tmp_path / "e.npy"), "-o", str(arc), "--device", "cpu"])
    assert r.exit_code == 2 and "no model runs" in r.output and not arc.exists()
    r = runner.invoke(app, ["compress", str(folder), "-o", str(arc), "--n-atoms", "4", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["embed", str(folder), "-o", str(tmp_path / "store"), "--device", "cuda"])
    assert r.exit_code == 2 and "runs on the CPU only" in r.output and not (tmp_path / "store").exists()
    r = runner.invoke(app, ["embed", str(folder), "-o", str(tmp_path / "store"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    more = tmp_path / "more"
    more.mkdir()
    (folder / "beach_0000.png").rename(more / "new_beach.png")
    before = arc.read_bytes()
    r = runner.invoke(app, ["add", str(arc), str(more), "--device", "cuda"])
    assert r.exit_code == 2 and "runs on the CPU only" in r.output and arc.read_bytes() == before
    assert runner.invoke(app, ["add", str(arc), str(more), "--device", "cpu"]).exit_code == 0
    image = str(more / "new_beach.png")
    r = runner.invoke(app, ["search", str(arc), image, "--device", "cuda"])
    assert r.exit_code == 2 and "runs on the CPU only" in r.output
    r = runner.invoke(app, ["search", str(arc), image, "--device", "cpu", "--top", "1"])
    assert r.exit_code == 0 and "beach" in r.output  # new_beach.png is beach_0000.png, moved
    (tmp_path / "words.txt").write_text("sea\n")
    r = runner.invoke(app, ["atoms", str(arc), "--vocab", str(tmp_path / "words.txt"), "--device", "cuda"])
    assert r.exit_code == 2 and "runs on the CPU only" in r.output
    r = runner.invoke(app, ["verify", str(arc), "--device", "cuda"])
    assert r.exit_code == 2 and "--deep" in r.output
    r = runner.invoke(app, ["verify", str(arc), "--deep", "--device", "cuda"])
    assert r.exit_code == 2 and "no model runs" in r.output and "CORRUPT" not in r.output
    r = runner.invoke(app, ["eval", "--dataset", str(folder), "-o", str(tmp_path / "ev"), "--device", "gpu"])
    assert r.exit_code == 2 and "--device must be" in r.output and not (tmp_path / "ev").exists()
