"""Peer measurement: Stable-Baselines3 DQN (CartPole-v1) or SAC (Pendulum-v1), PyTorch on CPU.

Run by `bench/dqn_cartpole.py` and `bench/sac_pendulum.py` with the python of
`bench/.sb3-venv` (stable-baselines3, gymnasium, CPU-only torch), in its own process.
Prints exactly one JSON line on stdout (the last line); everything else goes to stderr
(both through `bench/_peer_common.py`, which only uses the standard library).

    bench/.sb3-venv/bin/python bench/_sb3_peer.py --algo dqn --total-timesteps 50000 \\
        --learning-starts 1000 --repeats 3

What is timed.  SB3 is not compiled, so there is no compile time; `setup_s` is the wall
time of building the vectorised envs and the model.  Each repeat builds a fresh model and
calls `model.learn(total_timesteps)` once; a callback reads `time.perf_counter()`:
  * at `on_training_start` (num_timesteps 0),
  * at the first `on_step` whose `num_timesteps` exceeds `learning_starts` (SB3 trains
    after a rollout when `num_timesteps > learning_starts`, so from this point on every
    vectorised env step is followed by `gradient_steps` updates),
  * at `on_training_end`.
steady steps/s = (final num_timesteps - num_timesteps at the second mark) / wall between
the second and third marks: env steps with learning, warm-up excluded (the window also
holds the update that follows the marked step: one update more than its env steps
imply, under 0.1% here).  warmup steps/s = num_timesteps at the second mark / wall
between the first two marks (random actions, no updates).  Both are reported per repeat;
the orchestrating script uses the median over repeats.

Configuration (`--algo dqn`; the same as jaxrl and rejax in `bench/dqn_cartpole.py`):
  `DQN("MlpPolicy", make_vec_env("CartPole-v1", n_envs=10), learning_rate=2.5e-4,
  buffer_size=10_000, learning_starts=L, batch_size=128, tau=1.0, gamma=0.99,
  train_freq=1, gradient_steps=1, target_update_interval=500,
  exploration_fraction=0.5, exploration_initial_eps=1.0, exploration_final_eps=0.05,
  max_grad_norm=1000, policy_kwargs={"net_arch": [120, 84], "activation_fn": ReLU})`.
  With 10 envs `train_freq=1` means one gradient step per `env.step()` of the
  vectorised env, i.e. per 10 transitions; SB3 divides `target_update_interval` by
  `n_envs` (a hard copy every 50 vectorised steps = 500 env steps).  The loss is SB3's
  fixed `F.smooth_l1_loss` (Huber, delta 1): SB3 has no option for MSE.  Adam eps 1e-8
  (torch default).  Gradient-norm clipping at 1000 (SB3 always clips; 1000 is above
  the norms reached, like jaxrl's default).  Truncation is bootstrapped
  (`handle_timeout_termination=True`, the default).

Configuration (`--algo sac`; see `bench/sac_pendulum.py`):
  `SAC("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1), learning_rate=3e-4,
  buffer_size=B, learning_starts=L, batch_size=256, tau=0.005, gamma=0.99,
  train_freq=1, gradient_steps=1, ent_coef="auto", target_update_interval=1,
  target_entropy="auto", policy_kwargs={"net_arch": [256, 256],
  "activation_fn": ReLU})`: twin critics (SB3's default `n_critics=2`), entropy
  temperature learned from log-alpha 0 (alpha 1) toward target entropy -dim(A) = -1.

Threads: `torch.set_num_threads(--torch-threads)`, 1 by default (reported as
`torch_threads`).  For these tiny networks one thread is the faster setting: on the
2-core machine, loaded by other jobs, one Adam step of the 120-84 MLP on a batch of 128
took 1.0 ms with one thread and 55 ms with torch's default of two (OpenMP threads
waiting on each other), so the default would understate SB3 badly.
"""

import argparse
import statistics
import time

from _peer_common import emit, log, run_stats


def widths(hidden: str | None, default: list[int]) -> list[int]:
    """Hidden widths from "64,64" (`--hidden`), else `default`."""
    return default if hidden is None else [int(w) for w in hidden.split(",")]


def build(algo: str, args, seed: int):
    import torch
    from stable_baselines3 import DQN, SAC
    from stable_baselines3.common.env_util import make_vec_env

    if algo == "dqn":
        env = make_vec_env("CartPole-v1", n_envs=args.num_envs, seed=seed)
        return DQN(
            "MlpPolicy", env,
            learning_rate=2.5e-4, buffer_size=args.buffer_size,
            learning_starts=args.learning_starts, batch_size=128, tau=1.0, gamma=0.99,
            train_freq=1, gradient_steps=1, target_update_interval=500,
            exploration_fraction=0.5, exploration_initial_eps=1.0,
            exploration_final_eps=0.05, max_grad_norm=1000.0,
            policy_kwargs={"net_arch": widths(args.hidden, [120, 84]),
                           "activation_fn": torch.nn.ReLU},
            device="cpu", seed=seed, verbose=0,
        )
    env = make_vec_env("Pendulum-v1", n_envs=args.num_envs, seed=seed)
    return SAC(
        "MlpPolicy", env,
        learning_rate=3e-4, buffer_size=args.buffer_size,
        learning_starts=args.learning_starts, batch_size=256, tau=0.005, gamma=0.99,
        train_freq=1, gradient_steps=1, ent_coef="auto", target_update_interval=1,
        target_entropy="auto",
        policy_kwargs={"net_arch": widths(args.hidden, [256, 256]),
                       "activation_fn": torch.nn.ReLU},
        device="cpu", seed=seed, verbose=0,
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--algo", choices=["dqn", "sac"], required=True)
    p.add_argument("--total-timesteps", type=int, required=True)
    p.add_argument("--learning-starts", type=int, required=True)
    p.add_argument("--buffer-size", type=int, required=True)
    p.add_argument("--num-envs", type=int, required=True)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--hidden", default=None,
                   help="hidden widths, e.g. 64,64 (default: dqn 120,84; sac 256,256)")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch.set_num_threads (0: leave torch's default)")
    args = p.parse_args()

    import gymnasium
    import stable_baselines3
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)

    class Clock(BaseCallback):
        """Timestamps at the start, at the first step past learning_starts, at the end."""

        def __init__(self, learning_starts):
            super().__init__()
            self.learning_starts = learning_starts
            self.marks = {}

        def _on_training_start(self):
            self.marks["start"] = (time.perf_counter(), self.num_timesteps)

        def _on_step(self):
            if "learn" not in self.marks and self.num_timesteps > self.learning_starts:
                self.marks["learn"] = (time.perf_counter(), self.num_timesteps)
            return True

        def _on_training_end(self):
            self.marks["end"] = (time.perf_counter(), self.num_timesteps)

    runs = []
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        model = build(args.algo, args, seed=rep)
        setup_s = time.perf_counter() - t0
        clock = Clock(args.learning_starts)
        model.learn(total_timesteps=args.total_timesteps, callback=clock)
        (ts, ns), (tl, nl), (te, ne) = (clock.marks[k] for k in ("start", "learn", "end"))
        run = {
            "setup_s": setup_s,
            "total_s": te - ts,
            "env_steps": ne - ns,
            "warmup_s": tl - ts,
            "warmup_env_steps": nl - ns,
            "warmup_steps_per_s": (nl - ns) / (tl - ts),
            "learn_s": te - tl,
            "learn_env_steps": ne - nl,
            "learn_steps_per_s": (ne - nl) / (te - tl),
        }
        run["gradient_updates"] = int(model._n_updates)
        ep = [e["r"] for e in model.ep_info_buffer]
        run["final_return_mean_last_episodes"] = float(sum(ep) / len(ep)) if ep else None
        runs.append(run)
        log(f"[peer] SB3 {args.algo} repeat {rep}: warm-up {run['warmup_env_steps']} steps "
            f"in {run['warmup_s']:.2f}s ({run['warmup_steps_per_s']:,.0f}/s), learning "
            f"{run['learn_env_steps']} steps in {run['learn_s']:.2f}s "
            f"({run['learn_steps_per_s']:,.0f}/s), {run['gradient_updates']} updates")

    warm = statistics.median(r["warmup_steps_per_s"] for r in runs)
    results = {
        "sb3_version": stable_baselines3.__version__,
        "torch_version": torch.__version__,
        "gymnasium_version": gymnasium.__version__,
        "torch_threads": torch.get_num_threads(),
        "algo": args.algo,
        "num_envs": args.num_envs,
        "total_timesteps": args.total_timesteps,
        "learning_starts": args.learning_starts,
        "buffer_size": args.buffer_size,
        "runs": runs,
        # The fields the orchestrating scripts tabulate: the learning phase only.
        "setup_s": statistics.median(r["setup_s"] for r in runs),
        **run_stats([r["learn_s"] for r in runs], runs[0]["learn_env_steps"]),
        "warmup_steps_per_s_median": warm,
        "loss": "smooth_l1 (Huber, delta 1), fixed in SB3" if args.algo == "dqn" else
                "0.5 * sum over the 2 critics of MSE (SB3 SAC)",
    }
    emit(results)


if __name__ == "__main__":
    main()
