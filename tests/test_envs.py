"""Tests for `jaxrl.envs`: the registry (`make`, `register`, `list_envs`, `env_spec`) and the
documented dynamics of the probe environments, stepped by hand under `jax.jit`."""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from jaxrl import envs
from jaxrl.config import ConfigError
from jaxrl.envs import probes, registry
from jaxrl.types import EnvSpec

PROBE_IDS = ("probe/constant-reward", "probe/reward-equals-obs", "probe/one-step-delay",
             "probe/time-limit-endless", "probe/action-reward")


# ---------------------------------------------------------------------------- registry


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "Breakout-MinAtar"])
def test_make_gymnax_id_matches_gymnax_make(env_id):
    env, params = envs.make(env_id)
    ref_env, ref_params = gymnax.make(env_id)
    assert type(env) is type(ref_env)
    assert type(params) is type(ref_params)
    assert params == ref_params


@pytest.mark.parametrize("env_id", PROBE_IDS)
def test_make_probe_id_returns_env_and_default_params(env_id):
    env, params = envs.make(env_id)
    assert type(env) is probes.PROBES[env_id]
    assert isinstance(params, probes.ProbeParams)
    assert params == env.default_params
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == (1,) and obs.dtype == jnp.float32
    assert env.action_space(params).n == 2


def test_make_forwards_kwargs_to_our_factories():
    _, params = envs.make("probe/time-limit-endless", max_steps_in_episode=7)
    assert params.max_steps_in_episode == 7
    _, default = envs.make("probe/time-limit-endless")
    assert default.max_steps_in_episode == 20


@pytest.mark.parametrize("bad, suggestion", [
    ("CartPol-v1", "CartPole-v1"),
    ("cartpole-v1", "CartPole-v1"),
    ("Pendulum-v0", "Pendulum-v1"),
    ("probe/constant-rewrd", "probe/constant-reward"),
])
def test_unknown_id_raises_config_error_with_close_matches(bad, suggestion):
    with pytest.raises(ConfigError) as err:
        envs.make(bad)
    message = str(err.value)
    assert repr(bad) in message or bad in message
    assert "did you mean" in message
    assert suggestion in message
    assert isinstance(err.value, ValueError)  # ConfigError is a ValueError, as documented


def test_unknown_id_without_close_match_names_the_id_and_points_to_list():
    with pytest.raises(ConfigError) as err:
        envs.make("zzzzzzzzzzzz")
    message = str(err.value)
    assert "zzzzzzzzzzzz" in message
    assert "did you mean" not in message
    assert "jaxrl list" in message


@pytest.mark.parametrize("bad", [None, 3, ""])
def test_check_env_id_rejects_non_ids(bad):
    with pytest.raises(ConfigError):
        envs.check_env_id(bad)


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test are undone afterwards (the registry is module-global)."""
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    return registry


@pytest.mark.parametrize("taken", ["probe/constant-reward", "CartPole-v1", "Breakout-MinAtar"])
def test_register_refuses_taken_ids(scratch_registry, taken):
    before = envs.list_envs()
    with pytest.raises(ConfigError, match="already registered"):
        envs.register(taken, probes.ProbeConstantReward)
    assert envs.list_envs() == before
    env, _ = envs.make(taken)  # the original is untouched
    if taken.startswith("probe/"):
        assert type(env) is probes.PROBES[taken]
    else:
        assert type(env) is type(gymnax.make(taken)[0])


def test_register_adds_a_factory_once(scratch_registry):
    calls = []

    def factory(**kwargs):
        calls.append(kwargs)
        return probes.ProbeTimeLimitEndless(**kwargs)

    envs.register("test/my-env", factory)
    assert "test/my-env" in envs.list_envs()
    env, params = envs.make("test/my-env", max_steps_in_episode=3)
    assert isinstance(env, probes.ProbeTimeLimitEndless)
    assert params.max_steps_in_episode == 3
    assert calls == [{"max_steps_in_episode": 3}]
    with pytest.raises(ConfigError, match="test/my-env"):
        envs.register("test/my-env", factory)


@pytest.mark.parametrize("env_id, factory", [
    ("", probes.ProbeConstantReward),
    (None, probes.ProbeConstantReward),
    ("test/not-callable", 42),
])
def test_register_validates_arguments(scratch_registry, env_id, factory):
    before = envs.list_envs()
    with pytest.raises(ConfigError):
        envs.register(env_id, factory)
    assert envs.list_envs() == before


def test_list_envs_includes_gymnax_and_ours_once():
    ids = envs.list_envs()
    assert len(ids) == len(set(ids))
    assert set(gymnax.registered_envs) <= set(ids)
    assert set(PROBE_IDS) <= set(ids)
    assert "CartPole-v1" in ids and "probe/constant-reward" in ids


def test_env_spec_cartpole():
    spec = envs.env_spec(*envs.make("CartPole-v1"))
    assert spec == EnvSpec(obs_shape=(4,), discrete=True, num_actions=2)
    assert spec.action_dim == 2


def test_env_spec_pendulum():
    spec = envs.env_spec(*envs.make("Pendulum-v1"))
    assert spec.discrete is False
    assert spec.obs_shape == (3,)
    assert spec.action_shape == (1,)
    assert spec.action_low == (-2.0,)
    assert spec.action_high == (2.0,)
    assert spec.num_actions == 0
    assert spec.action_dim == 1


def test_env_spec_minatar_keeps_image_shape_and_probe():
    spec = envs.env_spec(*envs.make("Breakout-MinAtar"))
    assert spec.obs_shape == (10, 10, 4) and spec.discrete
    assert spec.num_actions == gymnax.make("Breakout-MinAtar")[0].num_actions
    probe_spec = envs.env_spec(*envs.make("probe/action-reward"))
    assert probe_spec == EnvSpec(obs_shape=(1,), discrete=True, num_actions=2)


def test_env_spec_rejects_unsupported_action_space():
    class TupleActions(probes.ProbeConstantReward):
        def action_space(self, params=None):
            return spaces.Tuple([spaces.Discrete(2), spaces.Discrete(3)])

    env = TupleActions()
    with pytest.raises(ConfigError, match="Tuple"):
        envs.env_spec(env, env.default_params)


# ---------------------------------------------------------------------------- probes


def _stepper(env_id, **kwargs):
    """`(env, params, reset, step)` with reset/step jitted over the default params."""
    env, params = envs.make(env_id, **kwargs)
    reset = jax.jit(lambda key: env.reset(key, params))
    step = jax.jit(lambda key, state, action: env.step(key, state, action, params))
    return env, params, reset, step


def _f(x):
    return np.asarray(x).tolist()


def test_probe_constant_reward_is_one_step_reward_one_terminal():
    _, _, reset, step = _stepper("probe/constant-reward")
    keys = jax.random.split(jax.random.key(1), 6)
    obs, state = reset(keys[0])
    assert _f(obs) == [0.0]
    for i, key in enumerate(keys[1:]):
        action = i % 2  # the action is ignored
        obs, state, reward, terminated, truncated, info = step(key, state, action)
        assert float(reward) == 1.0
        assert bool(terminated) and not bool(truncated)
        assert _f(info["final_observation"]) == [0.0]
        assert _f(obs) == [0.0]
        assert int(state.time) == 0  # auto-reset after every step


def test_probe_reward_equals_obs_over_many_keys():
    _, _, reset, step = _stepper("probe/reward-equals-obs")
    seen = []
    for seed in range(16):
        reset_key, step_key = jax.random.split(jax.random.key(seed))
        obs, state = reset(reset_key)
        value = float(obs[0])
        assert value in (-1.0, 1.0)
        seen.append(value)
        for action in (0, 1):
            _, _, reward, terminated, truncated, info = step(step_key, state, action)
            assert float(reward) == value
            assert bool(terminated) and not bool(truncated)
            assert _f(info["final_observation"]) == [value]
    assert set(seen) == {-1.0, 1.0}
    # The sign is a fair coin: over many keys both are common.
    obs, _ = jax.vmap(reset)(jax.random.split(jax.random.key(99), 512))
    frac = float(np.mean(np.asarray(obs) > 0))
    assert 0.4 < frac < 0.6


def test_probe_one_step_delay_pays_only_on_the_second_step():
    _, _, reset, step = _stepper("probe/one-step-delay")
    keys = iter(jax.random.split(jax.random.key(2), 8))
    obs, state = reset(next(keys))
    for _episode in range(3):
        assert _f(obs) == [0.0]
        obs, state, reward, terminated, truncated, info = step(next(keys), state, 0)
        assert float(reward) == 0.0 and not bool(terminated) and not bool(truncated)
        assert _f(obs) == [1.0] and _f(info["final_observation"]) == [1.0]
        obs, state, reward, terminated, truncated, info = step(next(keys), state, 1)
        assert float(reward) == 1.0 and bool(terminated) and not bool(truncated)
        assert _f(info["final_observation"]) == [1.0]  # the pre-reset observation
        assert _f(obs) == [0.0]  # the reset one


@pytest.mark.parametrize("limit", [20, 3])
def test_probe_time_limit_truncates_at_the_limit_and_never_terminates(limit):
    kwargs = {} if limit == 20 else {"max_steps_in_episode": limit}
    _, params, reset, step = _stepper("probe/time-limit-endless", **kwargs)
    assert params.max_steps_in_episode == limit
    num_steps = 2 * limit + limit // 2
    obs, state = reset(jax.random.key(3))

    def body(carry, key):
        state = carry
        obs, state, reward, terminated, truncated, info = step(key, state, 0)
        return state, (obs, reward, terminated, truncated, info["final_observation"],
                       state.time)

    _, (obs_t, r_t, term_t, trunc_t, final_t, time_t) = jax.jit(
        lambda s, k: jax.lax.scan(body, s, k))(state, jax.random.split(jax.random.key(4),
                                                                     num_steps))
    np.testing.assert_array_equal(r_t, np.ones(num_steps, np.float32))
    assert not np.asarray(term_t).any()
    expected_trunc = np.array([(i + 1) % limit == 0 for i in range(num_steps)])
    np.testing.assert_array_equal(trunc_t, expected_trunc)
    expected_time = np.array([(i + 1) % limit for i in range(num_steps)])
    np.testing.assert_array_equal(time_t, expected_time)
    np.testing.assert_array_equal(final_t, np.zeros((num_steps, 1), np.float32))
    np.testing.assert_array_equal(obs_t, np.zeros((num_steps, 1), np.float32))


def test_probe_action_reward_pays_only_for_the_matching_action():
    _, _, reset, step = _stepper("probe/action-reward")
    seen = set()
    for seed in range(16):
        reset_key, step_key = jax.random.split(jax.random.key(100 + seed))
        obs, state = reset(reset_key)
        value = float(obs[0])
        assert value in (-1.0, 1.0)
        seen.add(value)
        best = 1 if value > 0 else 0
        for action in (0, 1):
            _, _, reward, terminated, truncated, info = step(step_key, state, action)
            assert float(reward) == (1.0 if action == best else 0.0), (value, action)
            assert bool(terminated) and not bool(truncated)
            assert _f(info["final_observation"]) == [value]
    assert seen == {-1.0, 1.0}


@pytest.mark.parametrize("env_id", PROBE_IDS)
def test_probes_vmap_and_have_documented_spaces(env_id):
    env, params, reset, step = _stepper(env_id)
    obs_space = env.observation_space(params)
    assert isinstance(obs_space, spaces.Box) and tuple(obs_space.shape) == (1,)
    n = 8
    obs, state = jax.vmap(reset)(jax.random.split(jax.random.key(5), n))
    obs, state, reward, terminated, truncated, info = jax.vmap(step)(
        jax.random.split(jax.random.key(6), n), state, jnp.zeros(n, jnp.int32))
    assert obs.shape == (n, 1) and reward.shape == (n,) and reward.dtype == jnp.float32
    assert terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
    assert np.all((np.asarray(obs) >= -1.0) & (np.asarray(obs) <= 1.0))
