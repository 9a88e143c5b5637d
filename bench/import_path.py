"""Which edgefed modules a run has passed through when it writes its first row: the edgefed modules
in ``sys.modules`` at the moment the first round's row reaches rounds.csv, for
``edgefed run scenarios/quickstart.yaml`` (one round, no plots). The count is how much of the code a
reader must hold to follow a scenario to its first result.

    python bench/import_path.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "import_path.json"


def main() -> int:
    from typer.testing import CliRunner

    from edgefed.cli import app
    from edgefed.provenance import write_bench_result
    from edgefed.results import RunWriter

    seen: list[str] = []
    original = RunWriter.round_done

    def first_row(self, engine, round):
        original(self, engine, round)
        if not seen:
            seen.extend(sorted(m for m in sys.modules if m == "edgefed" or m.startswith("edgefed.")))

    RunWriter.round_done = first_row
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = CliRunner().invoke(app, ["run", str(REPO / "scenarios" / "quickstart.yaml"), "--out", f"{tmp}/run",
                                          "--quiet", "--set", "rounds.max=1", "--set", "output.plots=false",
                                          "--set", "output.report=false"])
    if result.exit_code != 0:
        print(result.output, file=sys.stderr)
        return 1
    by_room: dict[str, list[str]] = {}
    for name in seen:
        part = name.split(".")[1] if "." in name else ""
        room = part if part in ("simulator", "algorithms", "devices") else "edgefed"
        by_room.setdefault(room, []).append(name)
    for room, names in by_room.items():
        print(f"{room:10s} {len(names):3d}  {', '.join(n.rsplit('.', 1)[-1] for n in names)}")
    print(f"{len(seen)} edgefed modules loaded when the first row of rounds.csv was written")
    write_bench_result(RESULT, {"count": len(seen), "by_room": {r: len(n) for r, n in by_room.items()},
                                "modules": seen, "wall_s": round(time.perf_counter() - start, 1)}, __file__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
