"""Replay buffers against a NumPy ring model, the sum tree against NumPy, sampling statistics."""

import collections

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from scipy import stats

from jaxrl import buffers
from jaxrl.config import ConfigError


def make_row(step, num_envs):
    """One add's items: every field encodes (step, env), so alignment can be checked.

    Steps start at 1, so an all-zero (unwritten) slot is never mistaken for data.
    """
    env = np.arange(num_envs)
    return {
        "step": np.full(num_envs, step, np.int32),
        "env": env.astype(np.int32),
        "obs": np.stack([np.full(num_envs, step), env], axis=1).astype(np.float32),
        "action": (100 * step + env).astype(np.int32),
        "reward": (step + 0.5 * env).astype(np.float32),
        "done": (env % 2 == 1),
    }


def example_item():
    return jax.tree.map(lambda x: x[0], make_row(1, 1))


class Case:
    """One buffer configuration with its functions jitted once."""

    def __init__(self, prioritized, capacity, num_envs, batch_size, sequence_length=1,
                 min_size=None, alpha=0.6):
        if prioritized:
            self.buffer = buffers.make_prioritized(
                capacity=capacity, num_envs=num_envs, batch_size=batch_size,
                sequence_length=sequence_length, min_size=min_size, alpha=alpha)
        else:
            self.buffer = buffers.make_uniform(
                capacity=capacity, num_envs=num_envs, batch_size=batch_size,
                sequence_length=sequence_length, min_size=min_size)
        self.prioritized = prioritized
        self.rows = capacity // num_envs
        self.num_envs = num_envs
        self.batch_size = batch_size
        self.length = sequence_length
        self.min_size = batch_size if min_size is None else min_size
        self.alpha = alpha
        self.add = jax.jit(self.buffer.add)
        self.sample = jax.jit(self.buffer.sample)
        self.can_sample = jax.jit(self.buffer.can_sample)
        self.update = jax.jit(self.buffer.update_priorities)
        self.sample_many = jax.jit(jax.vmap(self.buffer.sample, in_axes=(None, 0, None)))

    def filled(self, num_adds):
        state = self.buffer.init(example_item())
        for t in range(1, num_adds + 1):
            state = self.add(state, make_row(t, self.num_envs))
        return state


# Batches are about as large as the number of windows, so each sample sees most of them.
CASES = {
    "uniform_l1": Case(False, capacity=8, num_envs=2, batch_size=8, min_size=3),
    "uniform_l3": Case(False, capacity=10, num_envs=2, batch_size=8, sequence_length=3,
                       min_size=1),
    "prioritized_l1": Case(True, capacity=12, num_envs=3, batch_size=4),
    "prioritized_l3": Case(True, capacity=10, num_envs=2, batch_size=6, sequence_length=3),
    "prioritized_l_eq_r": Case(True, capacity=8, num_envs=2, batch_size=8, sequence_length=4,
                               min_size=2),
}


def numpy_storage(history, case):
    """The ring a plain model expects: row t (1-based step) at slot (t - 1) % R, else zeros."""
    expected = jax.tree.map(lambda x: np.zeros((case.rows,) + x.shape, x.dtype),
                            make_row(1, case.num_envs))
    for t in history:
        for name, value in make_row(t, case.num_envs).items():
            expected[name][(t - 1) % case.rows] = value
    return expected


def valid_start_slots(num_adds, case):
    """Slots whose window of L rows holds consecutive steps: the model's valid starts."""
    size = min(num_adds, case.rows)
    first = num_adds - size + 1
    return {(t - 1) % case.rows for t in range(first, num_adds - case.length + 2)}


def numpy_tree(leaves):
    """Reference sum tree in NumPy: root at 1, children 2i and 2i + 1, leaves padded to 2^k."""
    size = 1 << (len(leaves) - 1).bit_length()
    tree = np.zeros(2 * size, np.float32)
    tree[size:size + len(leaves)] = leaves
    for i in reversed(range(1, size)):
        tree[i] = tree[2 * i] + tree[2 * i + 1]
    return tree


def check_tree_consistent(tree):
    """Every parent equals the float32 sum of its children."""
    tree = np.asarray(tree)
    half = tree.shape[0] // 2
    parents = np.arange(1, half)
    np.testing.assert_array_equal(tree[parents], tree[2 * parents] + tree[2 * parents + 1])


def check_sample(out, num_adds, case, beta, tree=None):
    """Windows are consecutive written steps of one env, fields aligned, indices right."""
    items = jax.tree.map(np.asarray, out.items)
    indices = np.asarray(out.indices)
    weights = np.asarray(out.weights)
    b, length = case.batch_size, case.length
    chex.assert_shape([items["step"], items["env"], items["action"], items["reward"],
                       items["done"]], (b, length))
    assert items["obs"].shape == (b, length, 2)
    assert indices.dtype == np.int32 and weights.dtype == np.float32
    oldest = max(num_adds - case.rows, 0) + 1
    for i in range(b):
        step, env = items["step"][i], items["env"][i]
        start = step[0]
        np.testing.assert_array_equal(step, start + np.arange(length))
        np.testing.assert_array_equal(env, env[0])
        assert oldest <= start and start + length - 1 <= num_adds, (start, num_adds)
        assert indices[i] == ((start - 1) % case.rows) * case.num_envs + env[0]
        # All fields of a transition come out together.
        np.testing.assert_array_equal(items["obs"][i], np.stack([step, env], 1))
        np.testing.assert_array_equal(items["action"][i], 100 * step + env)
        np.testing.assert_array_equal(items["reward"][i], step + 0.5 * env)
        np.testing.assert_array_equal(items["done"][i], env % 2 == 1)
    if tree is None:
        np.testing.assert_array_equal(weights, 1.0)
    else:
        p = np.asarray(buffers.sum_tree_leaves(tree))[indices].astype(np.float64)
        assert (p > 0).all()
        np.testing.assert_allclose(weights, (p.min() / p) ** beta, rtol=1e-5)


MAX_ADDS = 3 * max(case.rows for case in CASES.values())


@pytest.mark.parametrize("name", sorted(CASES))
@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(num_adds=st.integers(0, MAX_ADDS), seed=st.integers(0, 2**31 - 1),
                  beta=st.floats(0.0, 1.0))
@hypothesis.example(num_adds=MAX_ADDS, seed=0, beta=0.5)  # always wrap around twice
def test_adds_match_a_ring_model_and_samples_are_written_windows(name, num_adds, seed, beta):
    # Every check runs after every add, so one run of n adds covers all its prefixes.
    case = CASES[name]
    num_adds = min(num_adds, 3 * case.rows)
    rng = np.random.default_rng(seed)
    state = case.buffer.init(example_item())
    history = collections.deque(maxlen=case.rows)
    for k in range(num_adds + 1):
        if k:
            state = case.add(state, make_row(k, case.num_envs))
            history.append(k)
        assert int(state.size) == len(history) == min(k, case.rows)
        assert int(state.write_index) == k % case.rows
        assert bool(buffers.is_full(state)) == (k >= case.rows)
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.storage),
                     numpy_storage(history, case))
        num_windows = max(len(history) - case.length + 1, 0) * case.num_envs
        assert bool(case.can_sample(state)) == (num_windows >= case.min_size)
        tree = None
        if case.prioritized:
            tree = state.sum_tree
            check_tree_consistent(tree)
            leaves = np.asarray(buffers.sum_tree_leaves(tree))
            valid = np.zeros_like(leaves, bool)
            for slot in valid_start_slots(k, case):
                valid[slot * case.num_envs:(slot + 1) * case.num_envs] = True
            np.testing.assert_array_equal(leaves > 0, valid, err_msg=f"after {k} adds")
        if num_windows > 0:
            out = case.sample(state, jax.random.key(rng.integers(2**31)), beta)
            check_sample(out, k, case, beta, tree)
            # Random new priorities (zeros included): the invariant above must survive them.
            td = rng.exponential(size=case.batch_size) * (rng.random(case.batch_size) < 0.8)
            state = case.update(state, out.indices, td.astype(np.float32))


def test_add_refuses_items_of_the_wrong_shape_or_dtype():
    case = CASES["uniform_l1"]
    state = case.buffer.init(example_item())
    wrong_envs = make_row(1, case.num_envs + 1)
    with pytest.raises(AssertionError):
        case.buffer.add(state, wrong_envs)
    wrong_dtype = {**make_row(1, case.num_envs), "action": np.zeros(case.num_envs, np.float32)}
    with pytest.raises(AssertionError):
        case.buffer.add(state, wrong_dtype)
    with pytest.raises(ConfigError, match="example_item"):
        case.buffer.init({})


@pytest.mark.parametrize("name", sorted(CASES))
def test_sample_before_can_sample_is_finite_and_in_range(name):
    # Agents mask the update with `can_sample`; a NaN weight would leak through `0 * x`.
    case = CASES[name]
    for num_adds in (0, case.length - 1):
        out = case.sample(case.filled(num_adds), jax.random.key(0), 0.5)
        capacity = case.rows * case.num_envs
        assert ((0 <= np.asarray(out.indices)) & (np.asarray(out.indices) < capacity)).all()
        np.testing.assert_array_equal(out.weights, 1.0)


def test_init_allocates_time_major_storage_and_int32_counters():
    case = CASES["prioritized_l3"]
    state = case.buffer.init(example_item())
    assert state.storage["obs"].shape == (case.rows, case.num_envs, 2)
    assert state.storage["done"].dtype == jnp.bool_
    assert state.write_index.dtype == jnp.int32 and state.size.dtype == jnp.int32
    assert state.sum_tree.shape == (2 * 16,) and float(state.max_priority) == 1.0


NUM_LEAVES = 12  # P = 16
_tree_set = jax.jit(buffers.sum_tree_set)
# No subnormals: XLA on CPU flushes them to zero in sums (priorities are >= eps anyway).
leaf_values = st.one_of(st.just(0.0), st.floats(0.0, 1e3, width=32, allow_subnormal=False))


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
    indices=hnp.arrays(np.int32, (3, 8), elements=st.integers(0, NUM_LEAVES - 1)),
    values=hnp.arrays(np.float32, (3, 8), elements=leaf_values))
def test_sum_tree_batched_sets_match_numpy_with_last_write_winning(indices, values):
    tree = buffers.sum_tree_init(NUM_LEAVES)
    model = np.zeros(16, np.float32)
    for idx, val in zip(indices, values):
        tree = _tree_set(tree, idx, val)
        for i, v in zip(idx, val):  # sequential writes: the last duplicate wins
            model[i] = v
        np.testing.assert_array_equal(buffers.sum_tree_leaves(tree), model)
        check_tree_consistent(tree)
        np.testing.assert_allclose(buffers.sum_tree_total(tree), model.sum(dtype=np.float64),
                                   rtol=1e-6)


class SumTreeTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_duplicates_last_write_wins(self):
        tree = buffers.sum_tree_init(5)
        tree = self.variant(buffers.sum_tree_set)(
            tree, jnp.array([3, 1, 3, 3, 1], jnp.int32),
            jnp.array([1.0, 2.0, 7.0, 5.0, 0.0], jnp.float32))
        np.testing.assert_array_equal(buffers.sum_tree_leaves(tree), [0, 0, 0, 5, 0, 0, 0, 0])
        self.assertEqual(float(buffers.sum_tree_total(tree)), 5.0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_find_is_the_inverse_cdf(self):
        # Integer leaves keep all sums exact: compare with searchsorted on the prefix sums.
        leaves = np.array([3, 0, 1, 4, 0, 0, 2, 5, 0, 1], np.float32)
        tree = numpy_tree(leaves)
        targets = np.arange(0.0, leaves.sum(), 0.25, dtype=np.float32)
        found = self.variant(buffers.sum_tree_find)(tree, targets)
        expected = np.searchsorted(np.cumsum(leaves), targets, side="right")
        np.testing.assert_array_equal(found, expected)

    @chex.variants(with_jit=True, without_jit=True)
    def test_find_never_lands_on_a_zero_leaf(self):
        # Leaf 2 is below half an ulp of 1.0: the rounded total exceeds left + right, so a
        # naive descent for a target at the total walks right, then right again into leaf 3
        # (zero). Other leaves mix huge, tiny and zero values.
        ulp = np.spacing(np.float32(1.0))
        leaves = np.array([0.5, 0.5, 0.75 * ulp, 0.0, 1e8, 0.0, 1e-8, 0.0, 0.0, 3.0, 0.0, 1e-3,
                           0.0, 0.0], np.float32)
        tree = numpy_tree(leaves)
        total = tree[1]
        targets = np.concatenate([
            np.linspace(0.0, total, 5001, dtype=np.float32),
            [total, np.nextafter(total, np.float32(0)), np.float32(2.0), np.float32(1.0),
             np.float32(1.0) + ulp, -np.float32(1.0), np.float32(np.inf)]]).astype(np.float32)
        found = np.asarray(self.variant(buffers.sum_tree_find)(tree, targets))
        padded = tree[16:]
        self.assertTrue((padded[found] > 0).all(),
                        msg=f"zero leaves found: {found[padded[found] == 0]}")
        # Only the first four leaves: the crafted rounding case on its own.
        small = numpy_tree(leaves[:4])
        edge = small[1]
        self.assertEqual(edge, np.float32(1.0) + ulp)  # rounded up past 1 + 0.75 ulp
        found = np.asarray(self.variant(buffers.sum_tree_find)(small, np.array([edge], np.float32)))
        self.assertEqual(int(found[0]), 2)
        # An empty left subtree is never entered, even by a target below zero.
        gaps = numpy_tree(np.array([0.0, 0.0, 2.0, 1.0], np.float32))
        found = self.variant(buffers.sum_tree_find)(gaps, np.array([-1.0, 0.0], np.float32))
        np.testing.assert_array_equal(found, [2, 2])


def fill_with_priorities(case, td):
    """A full L = 1 prioritized buffer whose window i has priority from td[i]."""
    state = case.filled(case.rows)
    indices = jnp.arange(case.rows * case.num_envs, dtype=jnp.int32)
    # update_priorities takes batch_size indices; loop over chunks of that size.
    for start in range(0, indices.shape[0], case.batch_size):
        chunk = slice(start, start + case.batch_size)
        state = case.update(state, indices[chunk], jnp.asarray(td[chunk], jnp.float32))
    return state


NUM_KEYS = 1000  # batches per frequency test; one size, so `sample_many` compiles once per case


class PrioritizedTest(parameterized.TestCase):

    def test_sampling_frequencies_match_priorities(self):
        case = CASES["prioritized_l1"]  # R = 4, N = 3: 12 windows
        td = np.array([0.01, 0.1, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 0.3, 0.05, 4.0, 1.5], np.float32)
        state = fill_with_priorities(case, td)
        p = np.abs(td.astype(np.float64)) ** case.alpha + 1e-6
        np.testing.assert_allclose(buffers.sum_tree_leaves(state.sum_tree)[:12], p, rtol=1e-6)
        keys = jax.random.split(jax.random.key(0), NUM_KEYS)
        out = case.sample_many(state, keys, 0.5)
        counts = np.bincount(np.asarray(out.indices).ravel(), minlength=12)
        n = counts.sum()
        chi = stats.chisquare(counts, n * p / p.sum())
        self.assertGreater(chi.pvalue, 1e-3, msg=f"counts {counts}, {chi}")
        # The test has power: the same counts are far from uniform.
        wrong = stats.chisquare(counts, np.full(12, n / 12))
        self.assertLess(wrong.pvalue, 1e-6, msg=f"{wrong}")

    def test_uniform_frequencies_are_uniform_over_complete_windows(self):
        case = CASES["uniform_l3"]  # R = 5, L = 3: after 7 adds, 3 valid starts x 2 envs
        state = case.filled(7)
        keys = jax.random.split(jax.random.key(1), NUM_KEYS)
        out = case.sample_many(state, keys, 0.0)
        counts = np.bincount(np.asarray(out.indices).ravel(), minlength=10)
        valid = np.zeros(10, bool)
        for slot in valid_start_slots(7, case):
            valid[slot * 2:slot * 2 + 2] = True
        self.assertEqual(counts[~valid].sum(), 0, msg=f"{counts}")
        chi = stats.chisquare(counts[valid])
        self.assertGreater(chi.pvalue, 1e-3, msg=f"counts {counts}, {chi}")

    def test_importance_weights_match_numpy_formula(self):
        case = CASES["prioritized_l3"]
        state = case.filled(7)  # R = 5: 3 valid start rows x 2 envs
        out = case.sample(state, jax.random.key(2), 0.0)
        td = np.array([0.3, 4.0, 0.0, 1.5, 2.0, 0.7], np.float32)
        state = case.update(state, out.indices, td)
        beta = 0.4  # a Python float, like the other calls: no retrace
        out = case.sample(state, jax.random.key(3), beta)
        leaves = np.asarray(buffers.sum_tree_leaves(state.sum_tree), np.float64)
        num_windows = (leaves > 0).sum()
        self.assertEqual(num_windows, 6)
        prob = leaves[np.asarray(out.indices)] / leaves.sum()
        w = (num_windows * prob) ** -beta
        np.testing.assert_allclose(out.weights, w / w.max(), rtol=1e-5)
        self.assertEqual(float(np.max(out.weights)), 1.0)
        self.assertGreater(len(np.unique(np.asarray(out.weights))), 1)

    def test_priorities_max_priority_and_new_items(self):
        case = CASES["prioritized_l1"]  # R = 4, N = 3
        state = case.filled(4)
        indices = jnp.array([0, 5, 5, 7], jnp.int32)  # a duplicate: the last one wins
        td = jnp.array([-2.0, 9.0, 0.25, 0.0], jnp.float32)
        state = case.update(state, indices, td)
        leaves = np.asarray(buffers.sum_tree_leaves(state.sum_tree))
        expected = np.abs(np.array([-2.0, 0.25, 0.0])) ** case.alpha + 1e-6
        np.testing.assert_allclose(leaves[[0, 5, 7]], expected, rtol=1e-6)
        # Untouched windows keep the initial max priority 1; the new max is 2^alpha + eps.
        np.testing.assert_array_equal(leaves[[1, 2, 3, 4, 6, 8, 9, 10, 11]], 1.0)
        np.testing.assert_allclose(state.max_priority, expected[0], rtol=1e-6)
        # The next add overwrites row 0 and enters it at the max priority.
        state = case.add(state, make_row(5, case.num_envs))
        np.testing.assert_allclose(buffers.sum_tree_leaves(state.sum_tree)[:3], expected[0],
                                   rtol=1e-6)

    def test_a_huge_priority_dominates_sampling(self):
        case = CASES["prioritized_l1"]
        state = case.filled(6)
        keys = jax.random.split(jax.random.key(4), NUM_KEYS)
        before = np.asarray(case.sample_many(state, keys, 0.4).indices)
        self.assertLess((before == 7).mean(), 0.2)
        small = jnp.full((case.batch_size,), 1e-3, jnp.float32)
        for start in range(0, 12, case.batch_size):
            state = case.update(state, jnp.arange(start, start + 4, dtype=jnp.int32), small)
        state = case.update(state, jnp.array([7, 7, 7, 7], jnp.int32),
                            jnp.full((4,), 1e6, jnp.float32))
        after = np.asarray(case.sample_many(state, keys, 0.4).indices)
        self.assertGreater((after == 7).mean(), 0.99, msg=f"{np.bincount(after.ravel())}")

    def test_update_never_revives_an_overwritten_window(self):
        case = CASES["prioritized_l3"]  # R = 5, N = 2, L = 3
        state = case.filled(5)
        # Valid starts are steps 1-3 (rows 0-2). Sample every valid window explicitly.
        indices = jnp.array([0, 1, 2, 3, 4, 5], jnp.int32)
        state = case.add(state, make_row(6, case.num_envs))  # overwrites row 0 (step 1)
        state = case.add(state, make_row(7, case.num_envs))  # overwrites row 1 (step 2)
        state = case.update(state, indices, jnp.full((6,), 1e6, jnp.float32))
        leaves = np.asarray(buffers.sum_tree_leaves(state.sum_tree))
        np.testing.assert_array_equal(leaves[:4], 0.0)  # rows 0, 1 now span the head
        np.testing.assert_allclose(leaves[4:6], 1e6**case.alpha + 1e-6, rtol=1e-6)
        keys = jax.random.split(jax.random.key(5), NUM_KEYS)
        out = case.sample_many(state, keys, 1.0)
        valid = {slot * 2 + e for slot in valid_start_slots(7, case) for e in range(2)}
        self.assertTrue(set(np.unique(np.asarray(out.indices)).tolist()) <= valid)
        steps = np.asarray(out.items["step"])
        self.assertTrue((steps[..., 0] >= 3).all() and (steps[..., -1] <= 7).all())

    def test_alpha_zero_is_uniform_over_complete_windows(self):
        buffer = buffers.make_prioritized(capacity=8, num_envs=2, batch_size=4, alpha=0.0)
        state = buffer.init(example_item())
        for t in range(1, 5):
            state = buffer.add(state, make_row(t, 2))
        state = buffer.update_priorities(state, jnp.array([0, 1, 2, 3], jnp.int32),
                                         jnp.array([0.0, 5.0, 100.0, 0.1], jnp.float32))
        np.testing.assert_allclose(buffers.sum_tree_leaves(state.sum_tree)[:4], 1.0 + 1e-6)


class CompileAndVmapTest(parameterized.TestCase):

    @parameterized.named_parameters(("uniform", "uniform_l3"), ("prioritized", "prioritized_l3"))
    def test_add_sample_update_compile_once(self, name):
        case = CASES[name]
        chex.clear_trace_counter()
        add = jax.jit(chex.assert_max_traces(case.buffer.add, n=1))
        sample = jax.jit(chex.assert_max_traces(case.buffer.sample, n=1))
        update = jax.jit(chex.assert_max_traces(case.buffer.update_priorities, n=1))
        can_sample = jax.jit(chex.assert_max_traces(case.buffer.can_sample, n=1))
        state = case.buffer.init(example_item())
        for t in range(1, 12):  # past wrap-around
            state = add(state, make_row(t, case.num_envs))
            if bool(can_sample(state)):
                out = sample(state, jax.random.key(t), jnp.float32(t / 12))
                state = update(state, out.indices, jnp.full((case.batch_size,), t, jnp.float32))
        self.assertEqual(int(state.size), case.rows)

    @parameterized.named_parameters(("uniform", "uniform_l3"), ("prioritized", "prioritized_l3"))
    def test_scan_of_adds_equals_a_python_loop(self, name):
        case = CASES[name]
        rows = jax.tree.map(lambda *x: np.stack(x), *[make_row(t, case.num_envs)
                                                      for t in range(1, 9)])
        init = case.buffer.init(example_item())
        scanned, _ = jax.jit(lambda s, xs: jax.lax.scan(
            lambda s, x: (case.buffer.add(s, x), None), s, xs))(init, rows)
        chex.assert_trees_all_equal(scanned, case.filled(8))

    @parameterized.named_parameters(("uniform", "uniform_l3"), ("prioritized", "prioritized_l3"))
    def test_vmap_over_seeds_equals_separate_buffers(self, name):
        case = CASES[name]
        states = []
        for seed, num_adds in enumerate([3, 5, 9]):
            state = case.filled(num_adds)
            if case.prioritized:
                out = case.sample(state, jax.random.key(seed), 0.5)
                state = case.update(state, out.indices, jnp.arange(case.batch_size,
                                                                   dtype=jnp.float32) + seed)
            states.append(state)
        stacked = jax.tree.map(lambda *x: jnp.stack(x), *states)
        items = [make_row(1000 * (i + 1), case.num_envs) for i in range(3)]
        added = jax.jit(jax.vmap(case.buffer.add))(
            stacked, jax.tree.map(lambda *x: np.stack(x), *items))
        keys = jax.random.split(jax.random.key(7), 3)
        beta = 0.6
        sampled = jax.jit(jax.vmap(case.buffer.sample, in_axes=(0, 0, None)))(added, keys, beta)
        added, sampled = jax.tree.map(np.asarray, (added, sampled))
        for i in range(3):
            one = case.add(states[i], items[i])
            chex.assert_trees_all_equal(jax.tree.map(lambda x: x[i], added), one)
            alone = case.sample(one, keys[i], beta)
            chex.assert_trees_all_equal(jax.tree.map(lambda x: x[i], sampled.items), alone.items)
            np.testing.assert_array_equal(sampled.indices[i], alone.indices)
            np.testing.assert_allclose(sampled.weights[i], alone.weights, rtol=1e-6)

    def test_init_inside_vmap(self):
        case = CASES["prioritized_l1"]
        examples = jax.tree.map(lambda x: np.stack([x] * 3), example_item())
        states = jax.vmap(case.buffer.init)(examples)
        self.assertEqual(states.storage["obs"].shape, (3, case.rows, case.num_envs, 2))
        self.assertEqual(states.sum_tree.shape, (3, 32))


BASE = {"capacity": 8, "num_envs": 2, "batch_size": 4}


class ConfigErrorTest(parameterized.TestCase):

    @parameterized.named_parameters(
        ("capacity_zero", {"capacity": 0}, "capacity"),
        ("capacity_negative", {"capacity": -8}, "capacity"),
        ("capacity_float", {"capacity": 8.0}, "capacity"),
        ("capacity_bool", {"capacity": True}, "capacity"),
        ("capacity_not_multiple", {"capacity": 9}, "capacity must be a multiple"),
        ("capacity_below_window", {"capacity": 8, "sequence_length": 5}, "at least num_envs"),
        ("capacity_too_big", {"capacity": 2**31, "num_envs": 1}, "at most 2\\*\\*30"),
        ("num_envs_zero", {"num_envs": 0}, "num_envs"),
        ("num_envs_none", {"num_envs": None}, "num_envs"),
        ("batch_size_zero", {"batch_size": 0}, "batch_size"),
        ("batch_size_over_windows", {"batch_size": 9}, "batch_size must be at most"),
        ("sequence_length_zero", {"sequence_length": 0}, "sequence_length"),
        ("sequence_length_float", {"sequence_length": 2.0}, "sequence_length"),
        ("min_size_zero", {"min_size": 0}, "min_size"),
        ("min_size_over_windows", {"min_size": 7, "sequence_length": 2}, "min_size must be"),
    )
    def test_bad_sizes_raise_for_both_buffers(self, overrides, message):
        for make in (buffers.make_uniform, buffers.make_prioritized):
            with self.assertRaisesRegex(ConfigError, message):
                make(**{**BASE, **overrides})

    @parameterized.named_parameters(
        ("alpha_negative", {"alpha": -0.1}, "alpha"),
        ("alpha_above_one", {"alpha": 1.5}, "alpha"),
        ("alpha_nan", {"alpha": float("nan")}, "alpha"),
        ("alpha_string", {"alpha": "0.5"}, "alpha"),
        ("alpha_bool", {"alpha": True}, "alpha"),
        ("eps_zero", {"eps": 0.0}, "eps"),
        ("eps_negative", {"eps": -1e-6}, "eps"),
        ("eps_inf", {"eps": float("inf")}, "eps"),
        ("eps_underflows_float32", {"eps": 1e-50}, "eps"),
    )
    def test_bad_priority_options_raise(self, overrides, message):
        with self.assertRaisesRegex(ConfigError, message):
            buffers.make_prioritized(**{**BASE, **overrides})

    def test_edge_values_are_accepted(self):
        buffers.make_prioritized(**BASE, alpha=0, eps=1)
        buffers.make_prioritized(**{**BASE, "batch_size": 2}, alpha=1.0, sequence_length=4)
        buffers.make_uniform(capacity=3, num_envs=3, batch_size=3, min_size=1)
