"""Write the stored default Gaussian table (src/semzip/entropy/data/gaussian-default.npz).

The LIC's y tables (``QuantizedGaussianTable()``, 64 scales 0.11..256) were computed with libm's ``erfc`` at
every load, so a machine whose libm differs by one ULP could build other integer tables. They now ship as a
stored integer table. This script recomputes them with the original float recipe (``stored=False``), refuses
to write unless the result has the pinned fingerprint (the tables every existing archive was coded with), then
reloads the written file through the normal path and checks it again.

    .venv/bin/python scripts/build_gaussian_table.py            # write (only if the fingerprint matches)
    .venv/bin/python scripts/build_gaussian_table.py --check    # compare the stored file with this machine
"""

from __future__ import annotations

import sys

import numpy as np

from semzip.entropy import models


def main(argv: list[str]) -> int:
    computed = models.QuantizedGaussianTable(stored=False)
    fp = computed.fingerprint()
    print(f"computed here with libm: fingerprint {fp} (pinned {models.DEFAULT_GAUSSIAN_FINGERPRINT})")
    if fp != models.DEFAULT_GAUSSIAN_FINGERPRINT:
        print("this machine's libm gives other tables: not writing (run it where the pinned tables come out)")
        return 1
    if "--check" not in argv:
        path = models.DEFAULT_GAUSSIAN_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **computed.to_arrays())
        tmp.replace(path)
        models._stored_gaussian.cache_clear()
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    stored = models.QuantizedGaussianTable()
    same = stored.fingerprint() == fp and all(
        np.array_equal(a, b) for a, b in zip(stored.tables, computed.tables, strict=True)
    ) and np.array_equal(stored.boundaries, computed.boundaries) and np.array_equal(stored.scales, computed.scales)
    print("stored table equals the computed one" if same else "stored table DIFFERS from the computed one")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
