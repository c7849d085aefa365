"""jaxrl: functional reinforcement learning in JAX.

Agents are module-level pure functions over explicit pytrees (`jaxrl.agents.<family>`),
environments come from gymnax and our registry (`jaxrl.envs`), and a whole training run is
one jit-compiled function of a PRNG key, vmappable over seeds and hyperparameters
(`jaxrl.runner`).
"""

import os as _os
import warnings as _warnings

__version__ = "0.1.0"

# XLA:CPU (jaxlib 0.10.x) can deadlock when it runs a vmapped training loop of 6 or more
# seeds a second time (bench/RESULTS.md): its concurrency-optimised thunk scheduler is the
# trigger. The flag only affects the CPU backend, and it must be set before the backend
# starts, so we set it at import unless the user chose a value.
_FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"
if _FLAG not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = f"{_os.environ.get('XLA_FLAGS', '')} --{_FLAG}=false".strip()
    # Only if JAX is already imported (else its backends cannot have started): importing
    # it here would make `import jaxrl` slow and the CLI's Ctrl-C window before `main` long.
    try:
        if "jax" not in __import__("sys").modules:
            raise ImportError
        from jax._src import xla_bridge as _xla_bridge

        if _xla_bridge.backends_are_initialized():
            _warnings.warn(
                "jaxrl was imported after JAX started its backends, so the XLA:CPU "
                f"workaround --{_FLAG}=false could not take effect; import jaxrl first (or "
                "set it in XLA_FLAGS) to avoid rare hangs of vmapped runs on CPU",
                RuntimeWarning, stacklevel=2)
    except ImportError:  # a JAX without this private module: nothing to check
        pass
