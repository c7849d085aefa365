"""Cost of a PPO iteration's parts at the PureJaxRL CartPole config (1 seed).

Usage: `.venv/bin/python bench/profile/ppo_parts.py`. Each part runs 200 times inside one
compiled scan; learning is timed on a fixed batch.
"""

import _timing
import jax

from jaxrl import actor_critic
from jaxrl.agents import ppo

CONFIG = ppo.Config(env="CartPole-v1")
SETUP = ppo.setup(CONFIG)
HPARAMS = ppo.HParams.create(learning_rate=2.5e-4)
N = 200


def main() -> None:
    state = ppo.init(jax.random.key(0), SETUP, HPARAMS)
    state, traj, _ = actor_critic.collect(state, jax.random.key(1), SETUP)
    batch = ppo.make_batch(state.params, traj, HPARAMS, SETUP)
    minibatch = jax.tree.map(lambda x: x[:CONFIG.steps_per_iteration // CONFIG.num_minibatches], batch)

    def collect_and_batch(s, k):
        _, traj, _ = actor_critic.collect(s, k, SETUP)
        b = ppo.make_batch(s.params, traj, HPARAMS, SETUP)
        return s.replace(obs=s.obs + 1e-9 * b.advantage.sum())  # keep the batch alive

    def permutation(s, k):
        return s.replace(step=s.step + jax.random.permutation(k, CONFIG.steps_per_iteration)[0])

    parts = {
        "full iteration": lambda s, k: ppo.iteration(s, k, HPARAMS, SETUP)[0],
        "collect": lambda s, k: actor_critic.collect(s, k, SETUP)[0],
        "collect + make_batch": collect_and_batch,
        "learn (fixed batch)": lambda s, k: actor_critic.minibatch_epochs(s, batch, k, lambda st, mb: ppo.update(st, mb, HPARAMS, SETUP), CONFIG.num_epochs, CONFIG.num_minibatches)[0],
        "one minibatch update": lambda s, k: ppo.update(s, minibatch, HPARAMS, SETUP)[0],
        "one permutation": permutation,
    }
    for name, body in parts.items():
        t = _timing.best_time(jax.jit(_timing.scanned(body, N)), state, jax.random.key(2))
        print(f"{name:24s} {t / N * 1e3:7.3f} ms per iteration")


if __name__ == "__main__":
    main()
