"""Continuous-action kernels against NumPy loops, distrax and hand-worked numbers.

NAF (`naf_q` with the `naf` network: the argmax over a dense grid of actions is `mu(s)`,
`P = L L^T` positive-definite, the formula against a loop); the max over actions by
projected gradient ascent (monotone, inside the box, converging to the constrained
maximiser) and by sampling with CEM (approaching the grid maximum); SAC's squashed
Gaussian against a distrax `Transformed` distribution; TD3's smoothed target action by
hand; exploration noise and the OU process's stationary statistics; the skipped step of
`jaxrl.optim.PartOptimizer` (the per-group optimizer of the actor-critics); and the twin
critic's shapes and broadcasting.
"""

import functools
import itertools

import chex
import distrax
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg
from absl.testing import parameterized

from jaxrl import continuous, networks, optim
from jaxrl.types import EnvSpec

# Non-symmetric boxes, bounds that are not exact binary fractions, to catch a wrong affine map.
BOXES = {
    1: ((-0.3,), (0.7,)),
    2: ((-2.0, 0.1), (2.0, 1.3)),
    3: ((-2.0, 0.1, -1.0), (2.0, 1.3, 1.0)),
}


def spec_for(dim: int) -> EnvSpec:
    low, high = BOXES[dim]
    return EnvSpec(obs_shape=(3,), discrete=False, action_shape=(dim,), action_low=low,
                   action_high=high)


def box(dim: int) -> tuple[np.ndarray, np.ndarray]:
    low, high = BOXES[dim]
    return np.asarray(low, np.float32), np.asarray(high, np.float32)


@functools.lru_cache(maxsize=None)
def _param_structure(net):
    return jax.tree.flatten(jax.eval_shape(net.init, jax.random.key(0)))


def random_params(net, seed, scale=1.0):
    """Random parameters of `net`'s structure (NumPy): kernels `scale * N(0, 1 / fan_in)`,
    biases `0.3 * scale * N(0, 1)`.

    The structure comes from `eval_shape`, so nothing is initialised or compiled (the
    orthogonal initialiser's QR costs seconds of compilation per new shape on CPU).
    """
    leaves, tree = _param_structure(net)
    rng = np.random.default_rng(seed)

    def draw(x):
        std = 1.0 / np.sqrt(x.shape[-2]) if len(x.shape) >= 2 else 0.3
        return (scale * std * rng.normal(size=x.shape)).astype(x.dtype)
    return jax.tree.unflatten(tree, [draw(x) for x in leaves])


def numpy_naf_q(value, mu, chol, action):
    """Reference: `V - 1/2 (a - mu)^T L L^T (a - mu)`, one batch element at a time."""
    out = np.zeros(value.shape, np.float64)
    for idx in np.ndindex(*value.shape):
        d = action[idx].astype(np.float64) - mu[idx]
        p = chol[idx].astype(np.float64) @ chol[idx].astype(np.float64).T
        q = 0.0
        for i in range(d.shape[0]):
            for j in range(d.shape[0]):
                q += d[i] * p[i, j] * d[j]
        out[idx] = value[idx] - 0.5 * q
    return out


def grid(low, high, points):
    """A regular grid over the box `[low, high]`: points `[points**A, A]` and the spacing `[A]`."""
    axes = [np.linspace(lo, hi, points, dtype=np.float64) for lo, hi in zip(low, high)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))
    return mesh.astype(np.float32), (high.astype(np.float64) - low) / (points - 1)


def eigenvalues_from_chol(chol):
    """`(smallest, largest)` eigenvalue of `P = L L^T` in float64, the smallest through `P^-1`.

    For a badly conditioned `P` (extreme observations), `eigvalsh(P)` resolves the small
    eigenvalues only to `eps * lambda_max` and may even return a tiny negative one. The
    largest eigenvalue of `P^-1 = L^-T L^-1` is computed to full relative precision, and
    its inverse is `P`'s smallest; `L^-1` is a triangular solve (well-defined exactly when
    the diagonal is non-zero).
    """
    lower = np.asarray(chol, np.float64)
    inv = scipy.linalg.solve_triangular(lower, np.eye(lower.shape[0]), lower=True)
    lam_min = 1.0 / np.linalg.eigvalsh(inv.T @ inv)[-1]
    lam_max = np.linalg.eigvalsh(lower @ lower.T)[-1]
    return lam_min, lam_max


# --- NAF ------------------------------------------------------------------------------------

class NafQTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_naf_q_hand_worked(self):
        # L = [[1, 0], [2, 1]], mu = 0, V = 3. For a = (1, 0): L^T a = (1, 0), so
        # Q = 3 - 0.5 * 1 = 2.5 (using L a = (1, 2) instead would give 3 - 2.5 = 0.5).
        # For a = (1, 1): L^T a = (3, 1), Q = 3 - 0.5 * 10 = -2. At a = mu: Q = V = 3.
        chol = np.array([[1.0, 0.0], [2.0, 1.0]], np.float32)
        value = np.full((3,), 3.0, np.float32)
        mu = np.zeros((3, 2), np.float32)
        action = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], np.float32)
        q = self.variant(continuous.naf_q)(value, mu, np.broadcast_to(chol, (3, 2, 2)), action)
        np.testing.assert_allclose(q, [2.5, -2.0, 3.0], rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("a1", 1), ("a3", 3))
    def test_naf_q_matches_numpy_loop_with_batch_axes(self, dim):
        rng = np.random.default_rng(dim)
        batch = (2, 4)
        value = rng.normal(size=batch).astype(np.float32)
        mu = rng.normal(size=batch + (dim,)).astype(np.float32)
        # A general lower-triangular L (negative off-diagonals, positive diagonal).
        chol = np.tril(rng.normal(size=batch + (dim, dim))).astype(np.float32)
        idx = np.arange(dim)
        chol[..., idx, idx] = np.abs(chol[..., idx, idx]) + 0.1
        action = rng.normal(size=batch + (dim,)).astype(np.float32) * 2.0
        q = self.variant(continuous.naf_q)(value, mu, chol, action)
        self.assertEqual(q.shape, batch)
        np.testing.assert_allclose(q, numpy_naf_q(value, mu, chol, action), rtol=1e-5,
                                   atol=1e-5)
        # Q(s, mu(s)) = V(s).
        np.testing.assert_allclose(self.variant(continuous.naf_q)(value, mu, chol, mu), value,
                                   rtol=1e-6)


@functools.lru_cache(maxsize=None)
def _naf_on_grid(dim: int, points: int):
    """`(run, grid [G, A], spacing [A])`; `run(seed, obs [3]) -> (V, mu, L, q [G])` for the
    random parameters drawn from `seed`, jitted once per `dim`."""
    net = networks.make_continuous_network(spec_for(dim), "naf", (16, 16), "tanh")
    actions, spacing = grid(*box(dim), points)

    @jax.jit
    def apply(params, obs):
        value, mu, chol = net.apply(params, obs)
        n = actions.shape[0]
        q = continuous.naf_q(jnp.broadcast_to(value, (n,)), jnp.broadcast_to(mu, (n, dim)),
                             jnp.broadcast_to(chol, (n, dim, dim)), actions)
        return value, mu, chol, q

    return lambda seed, obs: apply(random_params(net, seed), obs), actions, spacing


@pytest.mark.parametrize("dim,points", [(1, 4001), (2, 301)])
@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1),
                  obs=hnp.arrays(np.float32, (3,), elements=st.floats(-3, 3, width=32)))
def test_naf_grid_argmax_is_mu_and_mu_in_box(dim, points, seed, obs):
    run, actions, spacing = _naf_on_grid(dim, points)
    value, mu, chol, q = (np.asarray(x) for x in run(seed, obs))
    low, high = box(dim)
    assert np.all(mu >= low) and np.all(mu <= high), (mu, low, high)
    best = actions[np.argmax(q)].astype(np.float64)
    lam_min, lam_max = eigenvalues_from_chol(chol)
    # The grid point nearest to mu is at most h/2 away per axis, so its squared P-distance
    # (a - mu)^T P (a - mu) is at most r = lam_max |h/2|^2. The grid argmax is no P-farther,
    # except that float32 Q-values near V tie within a few ulps of V (slack); so
    # |best - mu|^2 <= (r + 2 slack) / lam_min.
    r = lam_max * np.sum((0.5 * spacing) ** 2)
    slack = 8.0 * np.finfo(np.float32).eps * max(1.0, abs(float(value)))
    tol = np.sqrt((r + 2.0 * slack) / lam_min)
    assert np.linalg.norm(best - mu) <= tol, (best, mu, tol)
    # And the grid maximum is the maximum V up to that same resolution.
    assert q.max() <= value + slack
    assert q.max() >= value - 0.5 * r - slack


@functools.lru_cache(maxsize=None)
def _naf_heads(activation: str):
    net = networks.make_continuous_network(spec_for(3), "naf", (16, 16), activation)
    apply = jax.jit(net.apply)
    return lambda seed, obs: apply(random_params(net, seed), obs)


EXTREME_OBS = [np.zeros(3), np.full(3, 1e3), np.array([1e3, -1e3, 1e3]),
               np.array([1e6, -1e6, 3e5]), np.full(3, -1e6), np.array([3e7, 0.0, -3e7])]


def _check_precision(value, mu, chol):
    value, mu, chol = np.asarray(value), np.asarray(mu), np.asarray(chol)
    assert np.all(np.isfinite(chol)) and np.isfinite(value) and np.all(np.isfinite(mu))
    np.testing.assert_array_equal(np.triu(chol, k=1), 0.0)  # lower-triangular
    assert np.all(np.diag(chol) > 0.0), np.diag(chol)
    lam_min, lam_max = eigenvalues_from_chol(chol)
    assert 0.0 < lam_min <= lam_max < np.inf, (lam_min, lam_max)
    low, high = box(3)
    assert np.all(mu >= low) and np.all(mu <= high), mu


@pytest.mark.parametrize("obs_index", range(len(EXTREME_OBS)))
def test_naf_precision_positive_definite_at_extreme_observations(obs_index):
    # relu: the head's inputs grow linearly with the observation (tanh would saturate).
    run = _naf_heads("relu")
    for seed in range(4):
        _check_precision(*run(seed, jnp.asarray(EXTREME_OBS[obs_index], jnp.float32)))


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1),
                  obs=hnp.arrays(np.float32, (3,), elements=st.floats(-1e4, 1e4, width=32)))
def test_naf_precision_positive_definite_random(seed, obs):
    value, mu, chol = _naf_heads("relu")(seed, obs)
    _check_precision(value, mu, chol)
    # Where P is well-conditioned, plain eigenvalues of P agree that it is positive-definite.
    p = np.asarray(chol, np.float64) @ np.asarray(chol, np.float64).T
    eig = np.linalg.eigvalsh(p)
    if eig[-1] / eigenvalues_from_chol(chol)[0] < 1e8:
        assert eig[0] > 0.0, eig


# --- The max over actions: gradient ascent --------------------------------------------------

GA_LOW = np.array([-1.0, -0.5], np.float32)
GA_HIGH = np.array([1.0, 2.0], np.float32)
M_FULL = np.array([[2.0, 0.6], [0.6, 1.0]], np.float32)
M_DIAG = np.array([[3.0, 0.0], [0.0, 0.5]], np.float32)
# name: (M, c, start); the constrained maximiser is computed by `numpy_box_argmax`.
QUADRATICS = {
    "inside": (M_FULL, np.array([0.3, 1.2], np.float32), np.array([-0.9, -0.4], np.float32)),
    "outside_diag": (M_DIAG, np.array([1.7, -1.2], np.float32),
                     np.array([-0.8, 1.9], np.float32)),
    "outside_full": (M_FULL, np.array([-2.0, 3.0], np.float32),
                     np.array([0.9, -0.3], np.float32)),
}


def quadratic(m, c):
    """`Q(a) = -(a - c)^T M (a - c)` for `a [A]`, or `[N, A]` giving `[N]`."""
    m, c = jnp.asarray(m), jnp.asarray(c)

    def q(a):
        d = a - jnp.reshape(c, (1,) * (a.ndim - 1) + c.shape)
        return -jnp.sum(d * (d @ m), axis=-1)

    return q


def numpy_box_argmax(m, c, low, high):
    """Reference: the exact maximiser of a strictly concave quadratic over a box, in float64.

    The maximiser lies in the relative interior of one face of the box (each coordinate
    free, at its low or at its high bound), where it is that face's stationary point:
    with the fixed coordinates `x`, the free ones solve `M_ff (a_f - c_f) = -M_fx (a_x - c_x)`.
    Every face's stationary point that lies in the box is a candidate; the best one wins.
    """
    m, c = m.astype(np.float64), c.astype(np.float64)
    low, high = low.astype(np.float64), high.astype(np.float64)
    best, best_q = None, -np.inf
    for face in itertools.product((None, "low", "high"), repeat=len(c)):
        a = np.array([{"low": lo, "high": hi}.get(f, np.nan)
                      for f, lo, hi in zip(face, low, high)])
        free = np.isnan(a)
        if free.any():
            rhs = -m[np.ix_(free, ~free)] @ (a[~free] - c[~free])
            a[free] = c[free] + np.linalg.solve(m[np.ix_(free, free)], rhs)
        if np.all(a >= low - 1e-12) and np.all(a <= high + 1e-12):
            q = -(a - c) @ m @ (a - c)
            if q > best_q:
                best, best_q = a, q
    return best


def test_box_argmax_reference_is_the_clipped_optimum_where_known():
    # The reference against the cases known in closed form: c inside (c itself) and a
    # diagonal M with c outside (c clipped to the box).
    m, c, _ = QUADRATICS["inside"]
    np.testing.assert_allclose(numpy_box_argmax(m, c, GA_LOW, GA_HIGH), c, atol=1e-6)
    m, c, _ = QUADRATICS["outside_diag"]
    np.testing.assert_allclose(numpy_box_argmax(m, c, GA_LOW, GA_HIGH), [1.0, -0.5],
                               atol=1e-6)
    # And against brute force on a fine grid for the general case.
    m, c, _ = QUADRATICS["outside_full"]
    points, spacing = grid(GA_LOW.astype(np.float64), GA_HIGH.astype(np.float64), 1001)
    d = points.astype(np.float64) - c
    brute = points[np.argmax(-np.sum(d * (d @ m.astype(np.float64)), axis=-1))]
    np.testing.assert_allclose(numpy_box_argmax(m, c, GA_LOW, GA_HIGH), brute,
                               atol=2 * spacing.max())


class GradientAscentTest(parameterized.TestCase):

    def _ascend(self, case, num_steps, step_size, wrap=None):
        m, c, start = QUADRATICS[case]
        fn = functools.partial(continuous.gradient_ascent, quadratic(m, c),
                               num_steps=num_steps)
        fn = (wrap or self.variant)(fn)
        return np.asarray(fn(jnp.asarray(start), low=GA_LOW, high=GA_HIGH,
                             step_size=jnp.float32(step_size)))

    # One compilation per step count: the sweep runs without an outer jit (its scan is
    # compiled either way); the convergence test below covers jit and no-jit.
    @parameterized.named_parameters(
        *[(f"{case}_step{s}", case, s) for case in QUADRATICS for s in (0.1, 4.0)])
    def test_q_non_decreasing_and_iterates_in_box(self, case, step_size):
        m, c, _ = QUADRATICS[case]
        iterates = [self._ascend(case, k, step_size, wrap=lambda f: f) for k in range(0, 9)]
        d = np.stack(iterates).astype(np.float64) - c
        values = -np.sum(d * (d @ m.astype(np.float64)), axis=-1)  # Q in float64
        for a in iterates:
            assert np.all(a >= GA_LOW) and np.all(a <= GA_HIGH), a
        # Q never decreases, whatever the step size (4 half-ranges overshoots every box);
        # the slack is float32 rounding of the kernel's own comparison.
        assert np.all(np.diff(values) >= -1e-6 * np.maximum(1.0, np.abs(values[1:]))), values
        self.assertGreater(values[-1], values[0] + 0.1)
        if step_size == 0.1:
            # Far from the optimum a short step must raise Q strictly.
            self.assertGreater(values[1], values[0])

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(case, case) for case in QUADRATICS])
    def test_converges_to_constrained_maximiser(self, case):
        m, c, _ = QUADRATICS[case]
        expected = numpy_box_argmax(m, c, GA_LOW, GA_HIGH)
        np.testing.assert_allclose(self._ascend(case, 300, 0.25), expected, atol=2e-3)

    @chex.variants(with_jit=True, without_jit=True)
    def test_start_outside_box_is_projected_and_optimum_is_a_fixed_point(self):
        m, c, _ = QUADRATICS["inside"]
        fn = functools.partial(continuous.gradient_ascent, quadratic(m, c), num_steps=0)
        start = jnp.asarray([5.0, -3.0])
        np.testing.assert_array_equal(
            self.variant(fn)(start, low=GA_LOW, high=GA_HIGH, step_size=jnp.float32(0.1)),
            [1.0, -0.5])
        # Started at the optimum, no step can raise Q: it stays there.
        fn = functools.partial(continuous.gradient_ascent, quadratic(m, c), num_steps=5)
        np.testing.assert_allclose(
            self.variant(fn)(jnp.asarray(c), low=GA_LOW, high=GA_HIGH,
                             step_size=jnp.float32(0.5)), c, atol=1e-6)


# --- The max over actions: sampling and CEM ------------------------------------------------

SA_LOW, SA_HIGH = box(2)  # [-2, 2] x [0.1, 1.3]
PEAK_M = np.array([[40.0, 10.0], [10.0, 30.0]], np.float32)


@functools.lru_cache(maxsize=None)
def _sample_argmax_fn(num_samples, cem_iters, num_elites):
    """`(keys [K], c [A]) -> actions [K, A]`: one compilation for every peak c."""
    return jax.jit(jax.vmap(lambda key, c: continuous.sample_argmax(
        quadratic(PEAK_M, c), key, jnp.asarray(SA_LOW), jnp.asarray(SA_HIGH), num_samples,
        cem_iters, num_elites), in_axes=(0, None)))


def _sample_gaps(c, num_samples, cem_iters, num_elites):
    """Actions and grid-max gaps of `sample_argmax` over 32 keys, for the peaked critic at c."""
    c = np.asarray(c, np.float32)
    q = quadratic(PEAK_M, c)
    actions = np.asarray(_sample_argmax_fn(num_samples, cem_iters, num_elites)(
        jax.random.split(jax.random.key(0), 32), c))
    points, _ = grid(SA_LOW, SA_HIGH, 401)
    grid_q = np.asarray(q(jnp.asarray(points)))
    # Gaps as fractions of the critic's range over the box.
    gaps = (grid_q.max() - np.asarray(q(jnp.asarray(actions)))) / (grid_q.max() - grid_q.min())
    return actions, gaps


PEAK_INSIDE = (0.37, 0.81)
PEAK_OUTSIDE = (2.6, -0.4)


@pytest.mark.parametrize("c", [PEAK_INSIDE, PEAK_OUTSIDE])
def test_sample_argmax_approaches_grid_max_as_samples_grow(c):
    mean_gaps = []
    for n in (4, 64, 4096):
        actions, gaps = _sample_gaps(c, n, 0, 1)
        assert np.all(actions >= SA_LOW) and np.all(actions <= SA_HIGH), actions
        # The grid is fine (spacing 0.01 x 0.003): the sampled max cannot beat it by more.
        assert np.all(gaps >= -1e-3), gaps.min()
        mean_gaps.append(gaps.mean())
    assert mean_gaps[0] > mean_gaps[1] > mean_gaps[2], mean_gaps
    assert mean_gaps[2] < 5e-3 and mean_gaps[0] > 10 * mean_gaps[2], mean_gaps


@pytest.mark.parametrize("c", [PEAK_INSIDE, PEAK_OUTSIDE])
def test_cem_at_least_as_close_as_sampling(c):
    _, plain = _sample_gaps(c, 64, 0, 1)
    cem_actions, cem = _sample_gaps(c, 64, 4, 4)
    assert np.all(cem_actions >= SA_LOW) and np.all(cem_actions <= SA_HIGH), cem_actions
    assert cem.mean() <= plain.mean(), (cem.mean(), plain.mean())
    assert cem.mean() < 0.5 * plain.mean() + 1e-4, (cem.mean(), plain.mean())
    # Closer for the typical (median) key too, not only on average.
    assert np.median(cem) <= np.median(plain), (np.median(cem), np.median(plain))


# --- SAC's squashed Gaussian and TD3's smoothed target --------------------------------------

SAC_LOW = np.array([-2.0, 0.0], np.float32)
SAC_HIGH = np.array([2.0, 1.0], np.float32)
# Half-ranges (2, 0.5) above: their log-determinant sums to 0, so this second box (half-ranges
# (2, 0.375)) is needed to see the affine map's term in the log-probability.
SKEWED_LOW = np.array([-1.0, 0.5], np.float32)
SKEWED_HIGH = np.array([3.0, 1.25], np.float32)


def distrax_squashed(mean, log_std, low, high):
    """Reference for one example `[A]`: tanh, then the affine map onto `[low, high]`."""
    half = 0.5 * (high - low)
    # Chain applies its last bijector first: u -> tanh(u) -> shift + scale * tanh(u).
    bijector = distrax.Block(distrax.Chain([distrax.ScalarAffine(shift=low + half, scale=half),
                                            distrax.Tanh()]), ndims=1)
    base = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
    return distrax.Transformed(base, bijector), base, bijector


def reproduce_u(mean, log_std, key):
    """The pre-squash draw of `squashed_sample`, from its documented reparameterisation."""
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)


@jax.jit
def _reference_log_probs(mean, log_std, key, action, low, high):
    def one(m, s, u, a):
        dist, base, bij = distrax_squashed(m, s, low, high)
        # Through the returned action (inverting tanh), and through u (no inversion).
        return dist.log_prob(a), base.log_prob(u) - bij.forward_log_det_jacobian(u), \
            bij.forward(u)
    return jax.vmap(one)(mean, log_std, reproduce_u(mean, log_std, key), action)


class SquashedGaussianTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("box", SAC_LOW, SAC_HIGH),
                                    ("skewed_box", SKEWED_LOW, SKEWED_HIGH))
    def test_log_prob_matches_distrax_transformed(self, low, high):
        rng = np.random.default_rng(0)
        mean = rng.uniform(-1.0, 1.0, (16, 2)).astype(np.float32)
        log_std = rng.uniform(-2.0, -0.5, (16, 2)).astype(np.float32)
        key = jax.random.key(3)
        action, log_prob = self.variant(continuous.squashed_sample)(mean, log_std, key, low, high)
        self.assertEqual(action.shape, (16, 2))
        self.assertEqual(log_prob.shape, (16,))
        via_action, via_u, forward = _reference_log_probs(mean, log_std, key, action, low, high)
        np.testing.assert_allclose(action, forward, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(log_prob, via_u, rtol=1e-5, atol=1e-5)
        # Through the returned action itself (atanh loses a little precision).
        np.testing.assert_allclose(log_prob, via_action, rtol=1e-3, atol=1e-3)
        assert np.all(np.asarray(action) >= low) and np.all(np.asarray(action) <= high)

    @chex.variants(with_jit=True, without_jit=True)
    def test_log_prob_finite_where_tanh_saturates(self):
        low, high = SKEWED_LOW, SKEWED_HIGH
        mean = np.array([[20.0, -20.0], [-20.0, 20.0], [15.0, 0.3]], np.float32)
        log_std = np.array([[-1.0, 0.0], [-3.0, 0.5], [0.0, -1.0]], np.float32)
        key = jax.random.key(4)
        sample = self.variant(continuous.squashed_sample)
        action, log_prob = sample(mean, log_std, key, low, high)
        assert np.all(np.isfinite(log_prob)), log_prob
        assert np.all(np.asarray(action) >= low) and np.all(np.asarray(action) <= high)
        # tanh(u) rounds to +-1, so the action cannot be inverted; compare through u.
        _, via_u, _ = _reference_log_probs(mean, log_std, key, action, low, high)
        np.testing.assert_allclose(log_prob, via_u, rtol=1e-5)
        # The reparameterised action and log-prob have finite gradients there too.
        grads = jax.grad(lambda m: jnp.sum(sample(m, log_std, key, low, high)[1]))(
            jnp.asarray(mean))
        assert np.all(np.isfinite(grads)), grads

    @chex.variants(with_jit=True, without_jit=True)
    def test_mode_is_affine_tanh_of_mean(self):
        mean = np.array([[0.0, 0.0], [0.5, -1.0], [20.0, -20.0]], np.float32)
        mode = self.variant(continuous.squashed_mode)(mean, SAC_LOW, SAC_HIGH)
        # Centre (0, 0.5), half-range (2, 0.5).
        expected = np.stack([0.0 + 2.0 * np.tanh(mean[:, 0]), 0.5 + 0.5 * np.tanh(mean[:, 1])],
                            axis=-1)
        np.testing.assert_allclose(mode, expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(mode[0], [0.0, 0.5])
        np.testing.assert_allclose(mode[2], [2.0, 0.0])


class SmoothedTargetTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_hand_worked_clips(self):
        # Box [-2, 2] x [0, 1]: half-range (2, 0.5). sigma = 1, c = 0.5 (half-range units).
        # normal(key(7), (3, 2)) = [[ 0.4512,  1.9535], [-0.5162, -0.1409], [0.6155, 0.3343]]
        # clipped at +-0.5:        [[ 0.4512,  0.5   ], [-0.5   , -0.1409], [0.5   , 0.3343]]
        # times half-range:        [[ 0.9025,  0.25  ], [-1.0   , -0.0705], [1.0   , 0.1672]]
        # plus the actions         [[ 0.5   ,  0.2   ], [-0.5   ,  0.04  ], [1.5   , 0.9   ]]
        #                        = [[ 1.4025,  0.45  ], [-1.5   , -0.0305], [2.5   , 1.0672]]
        # clipped to the box:      [[ 1.4025,  0.45  ], [-1.5   ,  0.0   ], [2.0   , 1.0   ]]
        key = jax.random.key(7)
        eps = np.asarray(1.0 * jax.random.normal(key, (3, 2)))
        np.testing.assert_allclose(eps, [[0.45123515, 1.9534509], [-0.51623946, -0.1409403],
                                         [0.6154967, 0.3343165]], rtol=1e-5)
        action = np.array([[0.5, 0.2], [-0.5, 0.04], [1.5, 0.9]], np.float32)
        out = self.variant(continuous.smoothed_target_action)(
            action, key, jnp.float32(1.0), jnp.float32(0.5), SAC_LOW, SAC_HIGH)
        expected = [[0.5 + 2.0 * 0.45123515, 0.45], [-1.5, 0.0], [2.0, 1.0]]
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_zero_noise_is_identity_inside_box(self):
        action = np.array([[0.5, 0.2], [-1.9, 0.99]], np.float32)
        out = self.variant(continuous.smoothed_target_action)(
            action, jax.random.key(0), jnp.float32(0.0), jnp.float32(0.5), SAC_LOW, SAC_HIGH)
        np.testing.assert_array_equal(out, action)


# --- Exploration noise ----------------------------------------------------------------------

class ExploreTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_none_is_exact(self):
        action = jnp.asarray([0.123, 0.987])
        out = self.variant(lambda a, key, scale: continuous.explore(
            a, {}, key, "none", scale, SAC_LOW, SAC_HIGH))(action, jax.random.key(0),
                                                           jnp.float32(3.0))
        np.testing.assert_array_equal(out, action)

    @chex.variants(with_jit=True, without_jit=True)
    def test_gaussian_matches_formula_and_stays_in_box(self):
        keys = jax.random.split(jax.random.key(1), 256)
        action = jnp.asarray([1.5, 0.1])
        fn = self.variant(jax.vmap(
            lambda a, key, scale: continuous.explore(a, {}, key, "gaussian", scale, SAC_LOW,
                                                     SAC_HIGH), in_axes=(None, 0, None)))
        out = np.asarray(fn(action, keys, jnp.float32(2.0)))
        assert np.all(out >= SAC_LOW) and np.all(out <= SAC_HIGH)
        noise = np.stack([np.asarray(jax.random.normal(k, (2,))) for k in keys[:4]])
        expected = np.clip(np.asarray(action) + 2.0 * np.array([2.0, 0.5]) * noise,
                           SAC_LOW, SAC_HIGH)
        np.testing.assert_allclose(out[:4], expected, rtol=1e-6, atol=1e-6)
        # Both clips are hit with scale 2, and some actions are strictly inside.
        assert np.any(out == SAC_HIGH) and np.any(out == SAC_LOW)
        assert np.any((out > SAC_LOW) & (out < SAC_HIGH))

    @chex.variants(with_jit=True, without_jit=True)
    def test_ou_uses_the_process_value(self):
        action = jnp.asarray([0.0, 0.5])
        fn = self.variant(lambda a, noise, key, scale: continuous.explore(
            a, noise, key, "ou", scale, SAC_LOW, SAC_HIGH))
        out = fn(action, {"ou": jnp.asarray([0.25, -0.5])}, jax.random.key(0),
                 jnp.float32(0.4))
        # 0 + 0.4 * 2 * 0.25 = 0.2; 0.5 + 0.4 * 0.5 * (-0.5) = 0.4.
        np.testing.assert_allclose(out, [0.2, 0.4], rtol=1e-6)
        out = fn(action, {"ou": jnp.asarray([9.0, -9.0])}, jax.random.key(0),
                 jnp.float32(0.4))
        np.testing.assert_array_equal(out, [2.0, 0.0])


@functools.partial(jax.jit, static_argnames=("steps", "envs"))
def _ou_path(key, theta, steps, envs):
    """OU values `[steps, envs, 2]` from zero, never done."""
    renew = jax.vmap(lambda n, k: continuous.renew_noise(n, jnp.asarray(False), k, "ou", theta))
    noise = jax.vmap(lambda _: continuous.init_noise("ou", 2))(jnp.arange(envs))

    def step(noise, key):
        noise = renew(noise, jax.random.split(key, envs))
        return noise, noise["ou"]

    return jax.lax.scan(step, noise, jax.random.split(key, steps))[1]


@pytest.mark.parametrize("theta", [0.15, 0.5])
def test_ou_unit_stationary_variance_and_lag_one_autocorrelation(theta):
    path = np.asarray(_ou_path(jax.random.key(0), jnp.float32(theta), 4000, 32),
                      np.float64)[200:]  # drop the burn-in from x = 0
    var = path.var()
    lag1 = np.mean(path[1:] * path[:-1]) / np.mean(path * path)
    np.testing.assert_allclose(var, 1.0, atol=0.05)
    np.testing.assert_allclose(lag1, 1.0 - theta, atol=0.02)
    np.testing.assert_allclose(path.mean(), 0.0, atol=0.05)


class OuNoiseTest(parameterized.TestCase):

    def test_init_noise(self):
        np.testing.assert_array_equal(continuous.init_noise("ou", 3)["ou"], np.zeros(3))
        self.assertEqual(continuous.init_noise("gaussian", 3), {})

    @chex.variants(with_jit=True, without_jit=True)
    def test_renew_matches_formula_and_resets_where_done(self):
        x = jnp.asarray([[0.5, -1.0], [2.0, 0.3], [-0.7, 0.1]])
        done = jnp.asarray([False, True, False])
        keys = jax.random.split(jax.random.key(5), 3)
        renew = self.variant(jax.vmap(
            lambda n, d, k, theta: continuous.renew_noise(n, d, k, "ou", theta),
            in_axes=(0, 0, 0, None)))
        out = np.asarray(renew({"ou": x}, done, keys, jnp.float32(0.2))["ou"])
        np.testing.assert_array_equal(out[1], [0.0, 0.0])
        for i in (0, 2):
            eps = np.asarray(jax.random.normal(keys[i], (2,)))
            np.testing.assert_allclose(out[i], 0.8 * np.asarray(x[i]) + 0.6 * eps, rtol=1e-5,
                                       atol=1e-6)  # sqrt(1 - 0.8^2) = 0.6
        # Other kinds carry no state.
        self.assertEqual(continuous.renew_noise({}, jnp.asarray(True), keys[0], "gaussian",
                                                jnp.float32(0.2)), {})


# --- PartOptimizer --------------------------------------------------------------------------

class PartOptimizerTest(parameterized.TestCase):

    def _setup(self):
        params = {"actor": {"w": jnp.asarray([1.0, -2.0]), "b": jnp.asarray(0.5)},
                  "critic": {"w": jnp.asarray([[3.0, 4.0]])}}
        opt = optim.PartOptimizer({"actor": optax.adam(0.1), "critic": optax.sgd(0.5)})
        grads = {"w": jnp.asarray([0.2, -0.4]), "b": jnp.asarray(1.0)}
        return params, opt, opt.init(params), grads

    @chex.variants(with_jit=True, without_jit=True)
    def test_skipped_step_changes_nothing_and_applied_step_updates(self):
        params, opt, state, grads = self._setup()
        step = self.variant(lambda p, s, g, apply: opt.step(p, s, "actor", g, apply))
        # A first step taken to get non-trivial Adam moments.
        params, state = step(params, state, grads, jnp.asarray(True))
        for apply in (jnp.asarray(False), False):
            p_skip, s_skip = (opt.step(params, state, "actor", grads, apply) if apply is False
                              else step(params, state, grads, apply))
            chex.assert_trees_all_equal(p_skip, params)
            chex.assert_trees_all_equal(s_skip, state)
        p_new, s_new = step(params, state, grads, jnp.asarray(True))
        p_ref, s_ref = opt.step(params, state, "actor", grads, True)
        chex.assert_trees_all_close(p_new, p_ref, rtol=1e-6)
        chex.assert_trees_all_close(s_new, s_ref, rtol=1e-6)
        # The actor moved against the gradient by Adam's step, about lr = 0.1 per coordinate;
        # the critic group and its state were not touched.
        delta = np.asarray(p_new["actor"]["w"]) - np.asarray(params["actor"]["w"])
        np.testing.assert_allclose(delta, [-0.1, 0.1], rtol=1e-3)
        self.assertEqual(int(s_new["actor"][0].count), 2)
        chex.assert_trees_all_equal(p_new["critic"], params["critic"])
        chex.assert_trees_all_equal(s_new["critic"], state["critic"])


# --- Continuous networks --------------------------------------------------------------------

def test_twin_critics_differ_and_broadcast_one_observation():
    net = networks.make_continuous_network(spec_for(2), "critic", (8,), num_critics=2)
    params = net.init(jax.random.key(0))
    apply = jax.jit(net.apply)
    obs = jax.random.normal(jax.random.key(1), (5, 3))
    actions = jax.random.uniform(jax.random.key(2), (5, 2))
    q = np.asarray(apply(params, obs, actions))
    assert q.shape == (2, 5)
    assert np.all(np.isfinite(q)) and np.all(np.abs(q[0] - q[1]) > 1e-6), q
    # One observation against N = 7 candidate actions.
    cands = jax.random.uniform(jax.random.key(3), (7, 2))
    q_one = np.asarray(apply(params, obs[0], cands))
    assert q_one.shape == (2, 7)
    tiled = np.asarray(apply(params, jnp.broadcast_to(obs[0], (7, 3)), cands))
    np.testing.assert_allclose(q_one, tiled, rtol=1e-6)
    for i in range(7):
        np.testing.assert_allclose(q_one[:, i], apply(params, obs[0], cands[i]), rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize("dim", [1, 2])
def test_deterministic_actor_and_scale_to_bounds_stay_in_box(dim):
    low, high = box(dim)
    net = networks.make_continuous_network(spec_for(dim), "deterministic", (16,))
    obs = jnp.asarray(np.stack([np.zeros(3), np.full(3, 1e6), np.full(3, -1e6)]), jnp.float32)
    act = np.asarray(net.apply(random_params(net, 1, 3.0), obs))
    assert act.shape == (3, dim)
    assert np.all(act >= low) and np.all(act <= high), act
    t = jnp.asarray(np.stack([-np.ones(dim), np.zeros(dim), np.ones(dim)]), jnp.float32)
    np.testing.assert_allclose(networks.scale_to_bounds(t, low, high),
                               np.stack([low, 0.5 * (low + high), high]), rtol=1e-6, atol=1e-7)
