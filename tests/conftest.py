"""Test configuration: strict rank promotion, a compilation cache the suite shares, and
Hypothesis profiles (`dev`, `ci`)."""

import os
import tempfile

# Many tests compile the same small programs (the tiny configs shared across files, the
# CLI in subprocesses): one persistent cache for the whole suite, xdist workers and
# subprocesses included (they inherit the environment), lets each compile once. Set
# before JAX reads its config; a user's own JAX_COMPILATION_CACHE_DIR wins.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"jaxrl-tests-xla-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import hypothesis  # noqa: E402
import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

hypothesis.settings.register_profile("dev", max_examples=30, deadline=None)
hypothesis.settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True,
                                     print_blob=True)
hypothesis.settings.load_profile("ci" if os.environ.get("CI") else "dev")
