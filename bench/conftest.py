"""Shared helpers for the pytest-benchmark suites in bench/.

Every benchmark records ``extra_info["role"]``: "baseline" (the pure-torch chain or plain
forward the ratios are taken against), "ours", or "peer" (another library). bench/report.py
turns a --benchmark-json file into the ratio tables of the README.
"""

import pytest
import torch


def pytest_configure(config):
    # Benchmarks measure the library as users run it: all cores torch would use by default.
    torch.set_num_threads(torch.get_num_threads())


@pytest.fixture
def bench(benchmark):
    """``bench(role, fn, *args, rounds=..., **extra)``: time fn(*args) and record its role."""

    def run(role, fn, *args, rounds=20, warmup_rounds=2, **extra):
        benchmark.extra_info["role"] = role
        benchmark.extra_info.update(extra)
        return benchmark.pedantic(fn, args=args, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)

    return run
