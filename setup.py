"""Build the private C extension edgees._native from native/ (C99, pthreads, no SIMD intrinsics).

-ffp-contract=off keeps float arithmetic in the update identical to the numpy reference
(no fused multiply-add), so the same run log gives the same bytes on any x86/ARM machine.
"""
import sys
from setuptools import Extension, setup

args = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-fast-math", "-Wall", "-Wno-unused-function"]
if sys.platform == "win32":
    args = ["/O2", "/fp:precise"]

setup(
    ext_modules=[
        Extension(
            "edgees._native",
            sources=["native/binding.c", "native/noise.c", "native/kernels.c", "native/update.c", "native/jobs.c", "native/codes.c", "native/pack.c", "native/abort.c"],
            include_dirs=["native"],
            extra_compile_args=args,
            extra_link_args=[] if sys.platform == "win32" else ["-lpthread"],
        )
    ]
)
