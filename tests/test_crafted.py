"""Crafted archives (valid CRCs, hostile or inconsistent fields) through every command: counted outcomes.

The generator is ``benchmarks/crafted.py`` (its docstring says what it crafts); benchmarks/reliability.py
reports the same counts. Each crafted file goes through ``info``, ``verify``, ``verify --deep``,
``decompress`` (and ``add`` for collections) in process; every one must be refused with one error line and
nothing written, or decode identically to its seed, except the lies no checksum can tell
(``crafted.UNDETECTABLE``), which decode differently and are listed.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")  # the seeds: a collection dictionary is learned with torch; the tiny LIC


def _load_crafted():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "crafted.py"
    spec = importlib.util.spec_from_file_location("semzip_bench_crafted", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses needs the module registered
    spec.loader.exec_module(mod)
    return mod


crafted = _load_crafted()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    t0 = time.perf_counter()
    outcomes = crafted.run_all(tmp_path_factory.mktemp("crafted"))
    return outcomes, crafted.summary(outcomes), time.perf_counter() - t0


def test_every_crafted_archive_has_its_expected_outcome(run):
    _, s, _ = run
    assert not s["failures"], "\n".join(s["failures"][:20])


def test_counted_outcomes(run):
    outcomes, s, elapsed = run
    total = s["total"]
    assert total["tried"] == len(outcomes) >= 450
    assert total.get("crash", 0) == 0
    assert total["refused"] + total["identical"] + total["different"] == total["tried"]
    for codec, row in s["per_codec"].items():
        assert row["refused"] >= 100, codec  # every schema field of every codec, each refused value
        assert row["identical"] >= 8, codec  # valid files (tricky names, later minor versions) decode the same
        assert row["fields"] >= 12, codec
    # decoded differently: only the lies no checksum can tell, each listed with its reason
    assert set(s["different"]) <= set(crafted.UNDETECTABLE)
    expected_different = sum(o.craft.expect == "different" for o in outcomes)
    assert total["different"] == expected_different
    assert elapsed < 300  # ~45 s on 2 cores; a guard against a generator that grows without bound


def test_generator_covers_every_schema_field(run):
    """Every parameter a seed holds is crafted (a new schema field is crafted without touching the test)."""
    outcomes, _, _ = run
    crafted_fields, held = {}, {}
    for o in outcomes:
        c = o.craft
        if c.field.startswith("params."):
            crafted_fields.setdefault(c.codec, set()).add(c.field.split(".")[1])
        if c.field == "codec":  # the codec field was edited, the parameters are the seed's
            held.setdefault(c.codec, set(crafted.split(c.data).meta["params"]))
    for codec in ("sq", "collection", "image-text"):
        assert held[codec] and held[codec] <= crafted_fields[codec], (codec, held[codec] - crafted_fields[codec])


def test_crafted_files_keep_valid_checksums(run):
    """Only meaning lies: every crafted file whose header parses passes the CRC checks of verify."""
    from semzip.errors import SemzipError
    from semzip.format import Container

    outcomes, _, _ = run
    opened = 0
    for o in outcomes:
        try:
            con = Container.from_bytes(o.craft.data)
        except SemzipError:
            continue  # a header the reader refuses outright (wrong types, versions, item counts)
        rows = con.verify()  # the CRC of every section and block ("blocks" also checks the index's layout)
        assert all(ok for name, ok, _ in rows if name != "blocks"), (o.craft.codec, o.craft.label, rows)
        opened += 1
    assert opened > 300
