"""Non-finite guard of the runner, and the TensorBoard sink that never stops training."""

import os
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxrl import cli, logger, runner, testing
from jaxrl.config import ConfigError


@struct.dataclass
class ToyState:
    params: jax.Array  # float32 scalar
    step: jax.Array  # int32 scalar


@struct.dataclass
class ToyHParams:
    poison_at: jax.Array  # iteration (0-based) at which this seed's loss turns NaN; -1: never
    poison_params: jax.Array  # 1.0: poison the parameters instead of the loss


def toy_init(key, hp):
    return ToyState(params=jnp.float32(0.0), step=jnp.int32(0))


def toy_iteration(state, key, hp):
    hit = state.step == hp.poison_at
    loss = jnp.where(hit & (hp.poison_params == 0), jnp.nan, 0.0)  # independent of params
    params = jnp.where(hit & (hp.poison_params == 1), jnp.inf, state.params + 1.0)
    return (ToyState(params=params, step=state.step + 1),
            {"loss/total": loss, "episode/return": jnp.float32(jnp.nan)})


class Recorder:
    def __init__(self):
        self.firsts, self.aborted = [], False

    def on_chunk(self, first, metrics, info):
        self.firsts.append(first)

    def on_end(self, result):
        pass

    def on_abort(self):
        self.aborted = True


def run_toy(poison_at, poison_params, chunk=4):
    hp = ToyHParams(poison_at=jnp.array(poison_at, jnp.int32),
                    poison_params=jnp.array(poison_params, jnp.float32))
    rec = Recorder()
    runner.run(toy_init, toy_iteration, num_iterations=12, steps_per_iteration=1, hparams=hp,
               num_seeds=3, hparams_batched=True, chunk_iterations=chunk, devices=1,
               callbacks=[rec])
    return rec


def test_nan_loss_names_seed_and_iteration_and_keeps_earlier_chunks():
    rec = None
    with pytest.raises(runner.NonFiniteError,
                       match=r"seed 1 at iteration 6: loss/total$") as info:
        rec = run_toy([-1, 5, 9], [0.0, 0.0, 0.0])
    assert "seed 2" not in str(info.value)  # the earliest failure is reported


def test_callbacks_see_only_good_chunks_and_are_aborted():
    hp = ToyHParams(poison_at=jnp.array([-1, 5, -1], jnp.int32),
                    poison_params=jnp.zeros(3, jnp.float32))
    rec = Recorder()
    with pytest.raises(runner.NonFiniteError):
        runner.run(toy_init, toy_iteration, num_iterations=12, steps_per_iteration=1,
                   hparams=hp, num_seeds=3, hparams_batched=True, chunk_iterations=4,
                   devices=1, callbacks=[rec])
    assert rec.firsts == [0] and rec.aborted  # the chunk holding iteration 6 is not logged


def test_non_finite_parameters_name_the_leaf():
    with pytest.raises(runner.NonFiniteError, match=r"seed 2 by iteration 8 \(chunk from iteration 5\): state\.params$"):
        run_toy([-1, -1, 6], [0.0, 0.0, 1.0])


def test_a_healthy_run_passes_the_guard():
    run_toy([-1, -1, -1], [0.0, 0.0, 0.0])


def test_cli_reports_a_diverged_ppo_run_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "ppo", "--num-envs", "4", "--rollout-len", "16",
                     "--total-timesteps", "1024", "--learning-rate", "1e30",
                     "--max-grad-norm", "1e30", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1, err
    assert len(err) == 1 and err[0].startswith("jaxrl: error: training stopped: non-finite")
    assert "seed 0 at iteration 1:" in err[0] and "Traceback" not in err[0]
    # The first chunk already diverged: no metrics file (a rerun may reuse the folder),
    # no summary, and the folder holds only the config.
    assert sorted(os.listdir(out)) == ["config.json"]


def test_tensorboard_sink_writes_events(tmp_path):
    pytest.importorskip("tensorboardX")
    tb = logger.TensorBoardLogger(str(tmp_path / "tb"), steps_per_iteration=10)
    tb.on_chunk(0, {"loss/total": np.array([[1.0, 2.0], [3.0, np.nan]]),
                    "episode/return": np.full((2, 2), np.nan)}, {})
    tb.on_end(None)
    files = os.listdir(tmp_path / "tb")
    assert any(f.startswith("events.out.tfevents") for f in files)
    assert os.path.getsize(tmp_path / "tb" / files[0]) > 0


def test_tensorboard_failure_warns_and_never_raises(tmp_path, monkeypatch):
    tbx = pytest.importorskip("tensorboardX")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tbx.SummaryWriter, "add_scalar", broken)
    tb = logger.TensorBoardLogger(str(tmp_path / "tb"), steps_per_iteration=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tb.on_chunk(0, {"loss/total": np.ones((1, 3))}, {})
        tb.on_chunk(3, {"loss/total": np.ones((1, 3))}, {})  # disabled: no second warning
        tb.on_end(None)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "disk full" in messages[0]


# ------------------------------------------------------------------ GuardFinite env wrapper

from gymnax.environments import environment  # noqa: E402

from jaxrl import envs  # noqa: E402
from jaxrl.agents import ppo  # noqa: E402
from jaxrl.envs import probes  # noqa: E402
from jaxrl.envs.wrappers import GuardFinite, find_guard_state  # noqa: E402


@struct.dataclass
class NanAtState(environment.EnvState):
    nan_at: jax.Array  # int32 scalar: step of the episode with a NaN (and at twice it); -1: never


class NanAt(probes.ProbeTimeLimitEndless):
    """Reward 1, obs 0 forever (no auto-reset within a test run), except that about a third
    of the copies, chosen at reset, return a NaN observation (or reward) at step `nan_at`
    and again at `2 * nan_at`."""

    def __init__(self, what: str = "obs"):
        super().__init__(max_steps_in_episode=100_000)
        self.what = what

    def reset_env(self, key, params):
        poison_key, step_key = jax.random.split(key)
        nan_at = jnp.where(jax.random.bernoulli(poison_key, 0.3),
                           jax.random.randint(step_key, (), 3, 40), -1).astype(jnp.int32)
        state = NanAtState(nan_at=nan_at, time=0)
        return jnp.zeros((1,), jnp.float32), state

    def step_env(self, key, state, action, params):
        time = state.time + 1
        bad = (time == state.nan_at) | (time == 2 * state.nan_at)
        obs = jnp.where(bad & (self.what == "obs"), jnp.nan, 0.0) * jnp.ones((1,), jnp.float32)
        reward = jnp.where(bad & (self.what == "reward"), jnp.nan, 1.0).astype(jnp.float32)
        return obs, NanAtState(nan_at=state.nan_at, time=time), reward, jnp.bool_(False), {}


for _what in ("obs", "reward"):
    if f"test/nan-{_what}" not in envs.list_envs():
        envs.register(f"test/nan-{_what}", lambda what=_what: NanAt(what))


def _rollout(env, params, key, num_envs, num_steps):
    """Reset `num_envs` copies and step them with action `t % 2` at step t (1-based)."""
    reset_key, step_key = jax.random.split(key)
    obs0, state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(reset_key, num_envs), params)

    def body(state, xs):
        t, key = xs
        action = jnp.full((num_envs,), t % 2, jnp.int32)
        obs, state, reward, *_ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(key, num_envs), state, action, params)
        return state, (obs, reward)

    ts = jnp.arange(1, num_steps + 1, dtype=jnp.int32)
    state, (obs, reward) = jax.lax.scan(body, state, (ts, jax.random.split(step_key, num_steps)))
    return obs0, state, obs, reward


def test_guard_passes_values_through_and_records_only_the_first_event():
    raw = NanAt("obs")
    params = raw.default_params
    key = jax.random.key(3)
    rollout = jax.jit(_rollout, static_argnums=(0, 3, 4))
    obs0, state, obs, reward = rollout(GuardFinite(raw), params, key, 16, 90)
    ref0, ref_state, ref_obs, ref_reward = rollout(raw, params, key, 16, 90)
    np.testing.assert_array_equal(obs0, ref0)
    np.testing.assert_array_equal(obs, ref_obs)  # NaNs in the same places
    np.testing.assert_array_equal(reward, ref_reward)
    nan_at = np.asarray(ref_state.nan_at)
    assert (nan_at > 0).any() and (nan_at < 0).any()  # some copies poisoned, some not
    np.testing.assert_array_equal(state.steps, np.full(16, 90))
    # The first event (not the one at 2 * nan_at), and the action `t % 2` taken on it.
    np.testing.assert_array_equal(state.bad_step, nan_at)
    np.testing.assert_array_equal(state.bad_action, np.where(nan_at > 0, nan_at % 2, 0))
    assert state.bad_action.dtype == jnp.int32
    assert find_guard_state(state) is state


def test_guard_on_a_continuous_env_keeps_the_action_shape_and_stays_clear():
    env, params = envs.make("Pendulum-v1")
    guarded = envs.EpisodeStatistics(GuardFinite(env, params))
    obs, state = guarded.reset(jax.random.key(0), params)
    step = jax.jit(guarded.step)
    for key in jax.random.split(jax.random.key(1), 3):
        obs, state, *_ = step(key, state, jnp.array([0.5], jnp.float32), params)
    guard = find_guard_state(state)
    assert guard.bad_action.shape == (1,) and guard.bad_action.dtype == jnp.float32
    assert int(guard.bad_step) == -1 and int(guard.steps) == 3


def _expected_first_event(config, hparams, seed, num_seeds):
    """(seed, env, step) of the earliest NaN, read from the envs' initial states."""
    init_fn, _ = runner.parts(ppo.AGENT, config)
    state, _ = runner._make_init(init_fn, False)(runner.split_seed_keys(seed, num_seeds),
                                                  hparams)
    nan_at = np.asarray(find_guard_state(state.env_state).env_state.nan_at)  # [S, N]
    events = [(int(k), s, n) for (s, n), k in np.ndenumerate(nan_at) if k > 0]
    assert events, "choose a seed with a poisoned copy"
    step, s, n = min(events)
    return s, n, step


@pytest.mark.parametrize("what", ["obs", "reward"])
def test_an_env_returning_nan_at_step_k_is_reported_with_env_index_and_step(what):
    config = ppo.Config(env=f"test/nan-{what}", num_envs=4, rollout_len=16,
                        total_timesteps=4 * 16 * 4, num_epochs=1, num_minibatches=1,
                        hidden_sizes=(8,))
    hparams = ppo.HParams.create()
    seed_index, env_index, step = _expected_first_event(config, hparams, seed=9, num_seeds=2)
    assert (seed_index, step) == (1, 17)  # seed 1, second rollout: a non-trivial case
    init_fn, iteration_fn = runner.parts(ppo.AGENT, config)
    rec = Recorder()
    with pytest.raises(runner.NonFiniteError) as info:
        runner.run(init_fn, iteration_fn, num_iterations=config.num_iterations,
                   steps_per_iteration=config.steps_per_iteration, hparams=hparams, seed=9,
                   num_seeds=2, chunk_iterations=4, devices=1, callbacks=[rec])
    message = str(info.value)
    assert message.startswith(
        "environment produced a non-finite observation or reward: "
        f"seed {seed_index}, env {env_index}, step {step}, last action "), message
    assert message.rsplit(" ", 1)[1] in ("0", "1") and "\n" not in message
    assert rec.aborted


class TestSkipNonFinite:
    """The opt-in mode: non-finite updates are skipped and counted, fatal after K in a row."""

    @staticmethod
    def _setup(skip):
        from jaxrl import actor_critic
        from jaxrl.agents import ppo
        config = ppo.Config(num_envs=4, rollout_len=8, total_timesteps=64, num_minibatches=1,
                            skip_nonfinite=skip)
        hparams = ppo.HParams.create()
        setup = ppo.setup(config)
        state = ppo.init(jax.random.key(0), setup, hparams)
        state, traj, _ = actor_critic.collect(state, jax.random.key(1), setup)
        batch = ppo.make_batch(state.params, traj, hparams, setup)
        bad = batch.replace(advantage=batch.advantage.at[0].set(jnp.nan))
        update = jax.jit(ppo.update, static_argnames="setup")
        return setup, hparams, state, batch, bad, update

    def test_skipped_update_keeps_parameters_and_is_counted(self):
        config, hparams, state, batch, bad, update = self._setup(skip=2)
        skipped, m = update(state, bad, hparams, config)
        chex.assert_trees_all_equal(skipped.params, state.params)
        assert int(m["opt/nonfinite_skipped"]) == 1
        good, m = update(skipped, batch, hparams, config)
        assert not np.allclose(jax.tree.leaves(good.params)[0], jax.tree.leaves(state.params)[0])
        assert int(m["opt/nonfinite_skipped"]) == 1
        testing.assert_tree_finite(good.params)

    def test_fatal_after_k_in_a_row(self):
        config, hparams, state, batch, bad, update = self._setup(skip=2)
        for _ in range(2):
            state, _ = update(state, bad, hparams, config)
        testing.assert_tree_finite(state.params)  # two skipped
        state, _ = update(state, bad, hparams, config)  # the third goes through
        assert not np.isfinite(np.concatenate(
            [np.ravel(x) for x in jax.tree.leaves(state.params)])).all()

    def test_off_by_default_and_validated(self):
        from jaxrl.agents import ppo
        config, hparams, state, batch, bad, update = self._setup(skip=0)
        state, m = update(state, bad, hparams, config)
        assert int(m["opt/nonfinite_skipped"]) == 0
        with pytest.raises(ConfigError, match="skip_nonfinite"):
            ppo.Config(skip_nonfinite=-1)
