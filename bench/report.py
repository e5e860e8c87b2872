"""Print the tables of benchmark results files (the README's tables come from here).

    python -m bench.report bench/results/cpu_ops.json [more.json ...]

Each file holds the command that produced it, the machine, and groups of cases; every case is
compared with its group's first case (the baseline) by minimum and by median time.
"""

import json
import sys

from ._common import table


def main(argv=None):
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        raise SystemExit("usage: python -m bench.report RESULTS.json [...]")
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        m = data["machine"]
        print(f"`{data['command']}`\n\n{m['cpu']}, {m['logical_cpus']} logical CPUs, {m['torch_threads']} torch "
              f"threads, ISA {' '.join(m['isa']) or 'baseline'}, torch {m['torch']}, actcam_ext {m['actcam_ext']}\n")
        print(table(data["groups"]))
        print()


if __name__ == "__main__":
    main()
