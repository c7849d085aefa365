"""Thunk-level XLA:CPU profile of PPO at the PureJaxRL CartPole config (1 seed).

Usage: `.venv/bin/python bench/profile/ppo_thunks.py`. Runs 200 iterations under
`jax.profiler.trace` with `--xla_cpu_enable_xprof_traceme=true`, then prints the
costliest thunks that run once per minibatch update, per epoch or per iteration, each
with its HLO line. The profiler adds about 1 us to every thunk, so read the ranking, not
the absolute times (`ppo_parts.py` times the parts without it).
"""

import collections
import glob
import os
import re
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_cpu_enable_xprof_traceme=true")

import _timing  # noqa: E402,F401 - imports jaxrl (after the flag above)
import jax  # noqa: E402

from jaxrl import runner  # noqa: E402
from jaxrl.agents import ppo  # noqa: E402

ITERATIONS = 200
PER = {"update": 16, "epoch": 4, "iteration": 1}  # occurrences per iteration


def main() -> None:
    config = ppo.Config(env="CartPole-v1", total_timesteps=512 * ITERATIONS)
    hparams = ppo.HParams.create(learning_rate=2.5e-4)
    train = jax.jit(runner.make_train(ppo.AGENT, config))
    jax.block_until_ready(train(jax.random.key(0), hparams))
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            jax.block_until_ready(train(jax.random.key(2), hparams))
        path = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0]
        profile = jax.profiler.ProfileData.from_file(path)
    total, count = collections.Counter(), collections.Counter()
    for plane in profile.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLAEigen"):
                continue
            for event in line.events:
                if not event.name.startswith("end:"):
                    total[event.name] += event.duration_ns
                    count[event.name] += 1
    hlo = train.lower(jax.random.key(0), hparams).compile().as_text().splitlines()
    for name, ns in total.most_common():
        per_iteration = count[name] / ITERATIONS
        kind = next((k for k, v in PER.items() if abs(per_iteration - v) < 0.2), None)
        if kind is None or ns / count[name] < 3000:
            continue
        text = next((ln.strip()[:150] for ln in hlo if re.search(rf"\b{re.escape(name)} = ", ln)),
                    name)
        print(f"{ns / count[name] / 1e3:8.2f} us once per {kind:9s} {text}")


if __name__ == "__main__":
    main()
