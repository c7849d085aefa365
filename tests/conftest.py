"""Test configuration: strict rank promotion and Hypothesis profiles (`dev`, `ci`)."""

import os

import hypothesis
import jax

jax.config.update("jax_numpy_rank_promotion", "raise")

hypothesis.settings.register_profile("dev", max_examples=30, deadline=None)
hypothesis.settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True,
                                     print_blob=True)
hypothesis.settings.load_profile("ci" if os.environ.get("CI") else "dev")
