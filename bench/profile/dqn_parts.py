"""Cost of one DQN vector step's parts at the bench's PureJaxRL CartPole config.

Usage: `.venv/bin/python bench/profile/dqn_parts.py`. Each part runs 500 times inside one
compiled scan (one seed, unvmapped) on a buffer filled by 1,100 vector steps.
"""

import _timing
import jax

from jaxrl.agents import dqn
from vmap_one_seed import DQN_HPARAMS, dqn_config

CONFIG = dqn_config(500_000)
SETUP = dqn.setup(CONFIG)
HPARAMS = DQN_HPARAMS
N = 500


def main() -> None:
    collect = lambda s, k: dqn.collect_step(s, k, HPARAMS, SETUP)[0]  # noqa: E731
    state = dqn.init(jax.random.key(0), SETUP, HPARAMS)
    state = jax.jit(_timing.scanned(collect, 1100))(state, jax.random.key(1))
    sample = SETUP.buffer.sample(state.buffer, jax.random.key(5), 0.4)

    def sample_only(s, k):
        drawn = SETUP.buffer.sample(s.buffer, k, 0.4)
        return s.replace(step=s.step + drawn.indices[0])

    parts = {
        "collect_step (10 envs)": collect,
        "train_step (sample + update)": lambda s, k: dqn.train_step(s, k, HPARAMS, SETUP)[0],
        "update on a fixed sample": lambda s, k: dqn.update(s, sample, k, HPARAMS, SETUP)[0],
        "sample only": sample_only,
        "collect + train": lambda s, k: dqn.train_step(collect(s, k), k, HPARAMS, SETUP)[0],
    }
    for name, body in parts.items():
        t = _timing.best_time(jax.jit(_timing.scanned(body, N)), state, jax.random.key(3))
        print(f"{name:30s} {t / N * 1e6:8.1f} us per vector step")


if __name__ == "__main__":
    main()
