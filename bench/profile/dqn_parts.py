"""Cost of one DQN vector step's parts at the bench's PureJaxRL CartPole config.

Usage: `.venv/bin/python bench/profile/dqn_parts.py`. Each part runs 500 times inside one
compiled scan (one seed, unvmapped) on a buffer filled by 1,100 vector steps.
"""

import _timing
import jax

from jaxrl.agents import dqn

CONFIG = dqn.Config(env="CartPole-v1", num_envs=10, rollout_len=100, total_timesteps=500_000,
                    buffer_size=10_000, minibatch_size=128, learning_starts=10_000,
                    train_frequency=1, gradient_steps=1, target_update_period=50,
                    hidden_sizes=(120, 84), activation="relu", anneal_lr=False, loss="mse")
HPARAMS = dqn.HParams.create(learning_rate=2.5e-4, gamma=0.99, tau=1.0, epsilon_start=1.0,
                             epsilon_end=0.05, exploration_fraction=0.5)
N = 500


def main() -> None:
    collect = lambda s, k: dqn.collect_step(s, k, HPARAMS, CONFIG)[0]  # noqa: E731
    state = dqn.init(jax.random.key(0), CONFIG, HPARAMS)
    state = jax.jit(_timing.scanned(collect, 1100))(state, jax.random.key(1))
    sample = dqn.setup(CONFIG).buffer.sample(state.buffer, jax.random.key(5), 0.4)

    def sample_only(s, k):
        drawn = dqn.setup(CONFIG).buffer.sample(s.buffer, k, 0.4)
        return s.replace(step=s.step + drawn.indices[0])

    parts = {
        "collect_step (10 envs)": collect,
        "train_step (sample + update)": lambda s, k: dqn.train_step(s, k, HPARAMS, CONFIG)[0],
        "update on a fixed sample": lambda s, k: dqn.update(s, sample, k, HPARAMS, CONFIG)[0],
        "sample only": sample_only,
        "collect + train": lambda s, k: dqn.train_step(collect(s, k), k, HPARAMS, CONFIG)[0],
    }
    for name, body in parts.items():
        t = _timing.best_time(jax.jit(_timing.scanned(body, N)), state, jax.random.key(3))
        print(f"{name:30s} {t / N * 1e6:8.1f} us per vector step")


if __name__ == "__main__":
    main()
