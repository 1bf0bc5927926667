"""The optional native hot path (native/, Rust + PyO3) as `streams._native`; the rest is pyproject.toml.

Built when a Rust toolchain (rustc >= 1.74, e.g. rustup's) is on PATH; without one, or when its build
fails, the package installs without it and the worker runs the pure-Python core (`--engine auto` says so
once in its log). `PORTSCAN_NO_NATIVE=1` skips it on purpose.
"""

import os
import shutil
import sys

from setuptools import setup

rust_extensions = []
if os.environ.get("PORTSCAN_NO_NATIVE", "") not in ("", "0"):
    print("iis-portscan: PORTSCAN_NO_NATIVE set: installing the pure-Python core only", file=sys.stderr)
elif shutil.which("cargo") is None:
    print("iis-portscan: no cargo on PATH: installing the pure-Python core only", file=sys.stderr)
else:
    from setuptools_rust import Binding, RustExtension

    rust_extensions.append(
        RustExtension(
            "streams._native",
            path="native/Cargo.toml",
            binding=Binding.PyO3,
            optional=True,  # a failed build leaves the pure-Python core, never a failed install
            rust_version=">=1.74",
            args=["--locked"],
            debug=False,  # editable installs (make setup) too: a debug build is 6x slower
        )
    )

setup(rust_extensions=rust_extensions)
