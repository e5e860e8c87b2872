"""Ratio tables from a pytest-benchmark JSON file (the README's benchmark tables come from here).

    python bench/report.py bench/results/cpu_ops.json [more.json ...]

Within each group, every row is compared with the group's "baseline" row (median times):
"speed-up" = baseline median / row median. Rows with extra_info "bytes" also get GB/s and,
when the baseline is a plain copy, the fraction of the copy's bandwidth; rows with "frames"
get frames/s. Below the table, each group with an "ours" row and "peer" rows gets one line:
ours against each peer (peer median / our median, > 1 means we are faster).
"""

import json
import sys
from collections import defaultdict


def rows_of(paths):
    groups = defaultdict(list)
    machine = None
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        machine = machine or data.get("machine_info", {})
        for b in data["benchmarks"]:
            groups[b["group"] or b["name"]].append(b)
    return groups, machine


def render(groups, machine) -> str:
    lines = []
    if machine:
        lines.append(f"Machine: {machine.get('cpu', {}).get('brand_raw', '?')}, "
                     f"{machine.get('cpu', {}).get('count', '?')} logical CPUs, Python {machine.get('python_version')}")
        lines.append("")
    lines.append("| group | implementation | median | speed-up vs baseline | note |")
    lines.append("|---|---|---|---|---|")
    for group, benches in groups.items():
        base = next((b for b in benches if b["extra_info"].get("role") == "baseline"), None)
        for b in sorted(benches, key=lambda b: b["extra_info"].get("role") != "baseline"):
            med = b["stats"]["median"]
            impl = b["name"].split("[")[-1].rstrip("]") if "[" in b["name"] else b["name"]
            ratio = f"{base['stats']['median'] / med:.2f}x" if base else "-"
            note = b["extra_info"].get("note", "")
            if "bytes" in b["extra_info"]:
                gbs = b["extra_info"]["bytes"] / med / 1e9
                note = (note + " " if note else "") + f"{gbs:.1f} GB/s"
                if base and "bytes" in base["extra_info"] and b is not base:
                    base_gbs = base["extra_info"]["bytes"] / base["stats"]["median"] / 1e9
                    note += f" = {gbs / base_gbs:.0%} of a plain copy"
            if "frames" in b["extra_info"]:
                note = (note + " " if note else "") + f"{b['extra_info']['frames'] / med:.2f} frames/s"
            unit, scale = ("ms", 1e3) if med >= 1e-3 else ("us", 1e6)
            lines.append(f"| {group} | {impl} ({b['extra_info'].get('role', '?')}) | {med * scale:.2f} {unit} | "
                         f"{ratio} | {note} |")
    vs = []
    for group, benches in groups.items():
        ours = [b for b in benches if b["extra_info"].get("role") == "ours"]
        peers = [b for b in benches if b["extra_info"].get("role", "").startswith("peer")]
        if len(ours) == 1 and peers:
            med = ours[0]["stats"]["median"]
            vs.append(f"- {group}: ours is " + ", ".join(
                f"{p['stats']['median'] / med:.2f}x {p['name'].split('[')[-1].rstrip(']')}" for p in peers))
    if vs:
        lines += ["", "Ours against the peers (peer median / our median):", *vs]
    return "\n".join(lines)


def main(argv):
    if not argv:
        sys.exit("usage: python bench/report.py RESULTS.json [...]")
    print(render(*rows_of(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
