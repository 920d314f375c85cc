"""Exact path-dependent TreeSHAP for a forest of scikit-learn trees, compiled with numba.

The game shap's ``feature_perturbation="tree_path_dependent"`` explains: for a set S of known
features, a tree's value is the sum over its leaves of ``v * prod_j (o_j if j in S else z_j)``,
the product over the UNIQUE features j on the leaf's path, where ``o_j`` is 1 when x follows every
edge of j on that path and ``z_j`` the product of those edges' cover ratios (cover =
``weighted_n_node_samples``). Each leaf is a product game, whose Shapley value for its feature i is

    v * (o_i - z_i) * integral_0^1 prod_{j != i} (z_j + (o_j - z_j) t) dt

(the Shapley weights k!(d-k-1)!/d! are Beta integrals). The integrand is a polynomial of degree
d-1, so Gauss-Legendre quadrature with ceil(d/2) nodes is exact. Two facts keep it cheap:

* a feature with o_j = 0 contributes the factor ``z_j (1 - t)``, so every such feature of a leaf
  gets the same value ``-v * integral F(t) / (1 - t) dt`` (no per-feature work);
* for o_i = 1 the product without i is ``F(t) / g_i(t)``, and ``g_i(t) >= z_i > 0``.

One depth-first walk per tree and row keeps the path's unique features (merged z, o) per depth,
so nothing is precomputed per leaf: the engine holds only the node arrays. Trees run in parallel
(``prange``); each tree writes its own slice and the slices are summed in tree order afterwards,
so the result does not depend on the thread schedule. x is compared as float32 widened to
float64, exactly as scikit-learn's trees compare it (``x <= threshold`` goes left).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit, prange

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def quadrature_tables(max_depth: int) -> tuple[Floats, Floats]:
    """Gauss-Jacobi rules on [0, 1] for the weight (1 - t)^a: ``nodes[a, n]`` and
    ``weights[a, n]`` hold the n-node rule (exact for polynomials of degree 2n - 1), for
    a = 0..max_depth and n = 1..ceil(max_depth / 2)."""
    from scipy.special import roots_jacobi

    max_nodes = (max_depth + 1) // 2
    nodes = np.zeros((max_depth + 1, max_nodes + 1, max(max_nodes, 1)))
    weights = np.zeros_like(nodes)
    for a in range(max_depth + 1):
        for n in range(1, max_nodes + 1):
            x, w = roots_jacobi(n, a, 0)  # on [-1, 1], weight (1 - x)^a
            nodes[a, n, :n] = (x + 1.0) / 2.0
            weights[a, n, :n] = w * 2.0 ** (-a - 1)
    return nodes, weights


@njit(cache=True, nogil=True, error_model="numpy")
def _leaf(acc: Floats, value: Floats, node: int, feats: Ints, zs: Floats, on: npt.NDArray[np.bool_],
          m: int, jt: Floats, jw: Floats, z1: Floats, c1: Ints, c0: Ints, p: Floats, s: Floats) -> None:
    """Add one leaf's Shapley values to ``acc`` (columns x classes). No array views are made
    here (each costs reference counting, per leaf)."""
    if m == 0:
        return
    # Split the path's features into followed (o = 1) and not, without branches (which of the
    # two a feature is, is unpredictable): both lists are written, one index advances.
    m1 = 0
    m0 = 0
    z_all = 1.0
    z0 = 1.0
    for k in range(m):
        z = zs[k]
        o = 1 if on[k] else 0
        z_all *= z
        z1[m1] = z
        c1[m1] = feats[k]
        c0[m0] = feats[k]
        m1 += o
        m0 += 1 - o
        z0 *= 1.0 if o else z
    classes = value.shape[1]
    # What the leaf's values add up to (per unit of v): prod o - prod z.
    total = (1.0 if m0 == 0 else 0.0) - z_all
    followed = 0.0
    if m1 > 0:
        # F(t) = z0 (1 - t)^m0 * prod_followed g_j(t): the (1 - t)^m0 is the rule's weight, so
        # F / g_i (degree m1 - 1 besides it) takes ceil(m1 / 2) nodes.
        n = (m1 + 1) // 2
        for q in range(n):
            p[q] = jw[m0, n, q] * z0
        for k in range(m1):
            z = z1[k]
            for q in range(n):
                p[q] *= z + (1.0 - z) * jt[m0, n, q]
        for k in range(m1):
            s[k] = 0.0
        for q in range(n):  # node-major: independent sums per feature
            pq = p[q]
            tq = jt[m0, n, q]
            for k in range(m1):
                s[k] += pq / (z1[k] + (1.0 - z1[k]) * tq)
        for k in range(m1):
            w = s[k] * (1.0 - z1[k])
            followed += w
            for c in range(classes):
                acc[c1[k], c] += w * value[node, c]
    if m0 > 0:
        # Every feature x does not follow gets the same value, -v * integral F(t) / (1 - t):
        # the rest of the total, shared.
        share = (total - followed) / m0
        for k in range(m0):
            for c in range(classes):
                acc[c0[k], c] += share * value[node, c]


@njit(cache=True, nogil=True, error_model="numpy")
def _tree(x: Floats, root: int, left: Ints, right: Ints, feature: Ints, threshold: Floats,
          cover: Floats, value: Floats, max_depth: int, jt: Floats, jw: Floats, acc: Floats) -> None:
    """One tree's Shapley values for row x, added to ``acc`` (columns x classes).

    The path's unique features live in one list (``feats``/``zs``/``on``, ``m`` long, ``pos_of``
    indexing it by column); each edge taken is logged per depth and undone when the walk leaves
    its subtree, so every node costs O(1) besides its leaf's work."""
    width = max_depth + 2
    feats = np.empty(width, dtype=np.int64)
    zs = np.empty(width)
    on = np.empty(width, dtype=np.bool_)
    pos_of = np.full(x.shape[0], -1, dtype=np.int64)
    undo_pos = np.empty(width, dtype=np.int64)  # -1: the edge appended its feature
    undo_z = np.empty(width)
    undo_on = np.empty(width, dtype=np.bool_)
    z1 = np.empty(width)
    c1 = np.empty(width, dtype=np.int64)
    c0 = np.empty(width, dtype=np.int64)
    p = np.empty(width)
    s = np.empty(width)
    m = 0
    applied = 0  # edges in effect: the depth of the node last visited
    # (node, depth, parent, went left); node ids are global (offset by the tree's root)
    stack = np.empty((2 * width + 2, 4), dtype=np.int64)
    stack[0, 0] = root
    stack[0, 1] = 0
    stack[0, 2] = -1
    stack[0, 3] = 0
    top = 1
    while top > 0:
        top -= 1
        node = stack[top, 0]
        d = stack[top, 1]
        parent = stack[top, 2]
        while applied >= d and applied > 0:  # leave the subtrees finished since
            at = undo_pos[applied]
            if at < 0:
                m -= 1
                pos_of[feats[m]] = -1
            else:
                zs[at] = undo_z[applied]
                on[at] = undo_on[applied]
            applied -= 1
        if parent >= 0:
            j = feature[parent]
            xv = x[j]
            follows = xv <= threshold[parent] if stack[top, 3] == 1 else not (xv <= threshold[parent])
            ratio = cover[node] / cover[parent]
            at = pos_of[j]
            undo_pos[d] = at
            if at >= 0:
                undo_z[d] = zs[at]
                undo_on[d] = on[at]
                zs[at] *= ratio
                on[at] = on[at] and follows
            else:
                feats[m] = j
                zs[m] = ratio
                on[m] = follows
                pos_of[j] = m
                m += 1
            applied = d
        if left[node] < 0:
            _leaf(acc, value, node, feats, zs, on, m, jt, jw, z1, c1, c0, p, s)
            continue
        stack[top, 0] = root + right[node]
        stack[top, 1] = d + 1
        stack[top, 2] = node
        stack[top, 3] = 0
        stack[top + 1, 0] = root + left[node]
        stack[top + 1, 1] = d + 1
        stack[top + 1, 2] = node
        stack[top + 1, 3] = 1
        top += 2


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def shap_values(x: Floats, roots: Ints, left: Ints, right: Ints, feature: Ints, threshold: Floats,
                cover: Floats, value: Floats, max_depth: int, jt: Floats, jw: Floats) -> Floats:
    """Shapley values (rows x columns x classes) of the forest for rows ``x`` (float32 values
    widened to float64). ``left``/``right`` are tree-local child ids (-1 at a leaf); ``value``
    holds each leaf's class values already divided by the number of trees."""
    rows, columns = x.shape
    trees = roots.shape[0]
    classes = value.shape[1]
    per_tree = np.zeros((rows * trees, columns, classes))
    for k in prange(rows * trees):
        r = k // trees
        t = k % trees
        _tree(x[r], roots[t], left, right, feature, threshold, cover, value, max_depth, jt, jw,
              per_tree[k])
    out = np.zeros((rows, columns, classes))
    for r in range(rows):
        for t in range(trees):  # in tree order: the same floats on any schedule
            out[r] += per_tree[r * trees + t]
    return out
