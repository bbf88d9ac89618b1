"""The allocator tuning that keeps a training step free of page faults."""
import os
import platform
import subprocess
import sys

import pytest

from numpy_dl import _malloc

# Allocate and free a 40 MiB temporary ten times (glibc maps anything over 32 MiB afresh
# by default, and the kernel zero-fills every page of a fresh mapping), then print the
# page faults those ten allocations took.
FAULTS_OF_TEMPORARIES = """
import resource, numpy as np, numpy_dl
for _ in range(3):
    np.ones(10 << 20, dtype=np.float32).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    np.ones(10 << 20, dtype=np.float32).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(keep_memory):
    env = dict(os.environ, NUMPY_DL_KEEP_MEMORY=keep_memory)
    out = subprocess.run([sys.executable, "-c", FAULTS_OF_TEMPORARIES], env=env, check=True,
                         capture_output=True, text=True)
    return int(out.stdout)


def test_opting_out_changes_nothing(monkeypatch):
    monkeypatch.setenv("NUMPY_DL_KEEP_MEMORY", "0")
    assert _malloc.keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="tunes glibc only")
def test_freed_temporaries_are_reused_without_page_faults():
    assert faults("0") > 2000  # a 40 MiB mapping is about 10,000 pages
    assert faults("1") < 200
