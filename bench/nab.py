"""`python -m bench.nab`: the anomaly detector on the Numenta Anomaly Benchmark development set.

Runs the standalone scorer that ships with the set (`../shared/nab/nabscore.py`, or --nab-root) on
`analytics.nab.score` and reports the three profiles (standard, reward_low_FP_rate,
reward_low_FN_rate), writing bench/results/nab.json. Needs pandas (the bench extra).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.nab")
    p.add_argument("--nab-root", default=str(ROOT.parent / "shared" / "nab"), help="where nabscore.py and data/ are")
    args = p.parse_args(argv)
    scorer = Path(args.nab_root) / "nabscore.py"
    if not scorer.exists():
        print(f"bench.nab: no NAB scorer at {scorer}; pass --nab-root", file=sys.stderr)
        return 2
    out = ROOT / "bench" / "results" / "nab.json"
    out.parent.mkdir(exist_ok=True)
    r = subprocess.run([sys.executable, str(scorer), "--detector", str(ROOT / "analytics" / "nab.py") + ":score",
                        "--jobs", "2", "--json", str(out)], capture_output=True, text=True, check=False, cwd=ROOT)
    print(r.stdout, end="")
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr, end="")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
