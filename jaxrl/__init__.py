"""jaxrl: functional reinforcement learning in JAX.

Agents are module-level pure functions over explicit pytrees (`jaxrl.agents.<family>`),
environments come from gymnax and our registry (`jaxrl.envs`), and a whole training run is
one jit-compiled function of a PRNG key, vmappable over seeds and hyperparameters
(`jaxrl.runner`).
"""

__version__ = "0.1.0"
