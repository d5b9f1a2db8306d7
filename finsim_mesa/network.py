"""Interbank network topologies, user networks and the adjacency arrays.

A topology is a graph whose nodes are banks ``0..n-1``; each edge is a lending
relation oriented lender → borrower (undirected graphs get a random
orientation from the model's generator). :func:`calibrate` then draws bank
sizes and builds balance sheets whose interbank assets sit on those edges.

All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp

from finsim_mesa.config import TOPOLOGIES, ModelConfig
from finsim_mesa.errors import ConfigError

__all__ = [
    "Adjacency",
    "barabasi_albert",
    "build_topology",
    "check_exposures",
    "core_periphery",
    "erdos_renyi",
    "graph_from_exposures",
    "user_network",
]

def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def barabasi_albert(n: int, m: int, rng: np.random.Generator) -> nx.Graph:
    """Scale-free network: each new bank links to ``m`` existing banks (preferential)."""
    return nx.barabasi_albert_graph(n, m, seed=_seed(rng))


def erdos_renyi(n: int, mean_degree: float, rng: np.random.Generator,
                directed: bool = False) -> nx.Graph:
    """Random network with link probability ``mean_degree / (n - 1)``: undirected
    (mean degree ``mean_degree``), or directed lender → borrower (mean out-degree
    and in-degree ``mean_degree``, as in Gai & Kapadia 2010)."""
    p = min(1.0, mean_degree / max(n - 1, 1))
    return nx.fast_gnp_random_graph(n, p, seed=_seed(rng), directed=directed)


def core_periphery(
    n: int, core_fraction: float, core_density: float, m: int, rng: np.random.Generator
) -> nx.Graph:
    """Dense core of ``round(core_fraction * n)`` banks (link probability
    ``core_density``); every periphery bank links to ``m`` random core banks."""
    n_core = max(1, min(n, round(core_fraction * n)))
    g = nx.Graph()
    g.add_nodes_from(range(n))
    iu, ju = np.triu_indices(n_core, k=1)
    keep = rng.random(iu.size) < core_density
    g.add_edges_from(zip(iu[keep].tolist(), ju[keep].tolist(), strict=True))
    k = min(m, n_core)
    for i in range(n_core, n):
        for j in rng.choice(n_core, size=k, replace=False):
            g.add_edge(i, int(j))
    g.graph["core"] = np.arange(n_core)
    return g


def build_topology(cfg: ModelConfig, rng: np.random.Generator) -> nx.Graph:
    """The graph named by ``cfg.topology`` with ``cfg.n_banks`` nodes.

    Raises:
        ConfigError: ``topology = "user"`` without a network given.
    """
    if cfg.topology == "user":
        raise ConfigError("topology = 'user' means the network is given: pass graph= or "
                          "exposures=, or choose " + ", ".join(TOPOLOGIES))
    if cfg.topology == "barabasi_albert":
        return barabasi_albert(cfg.n_banks, cfg.edges_per_node, rng)
    if cfg.topology == "erdos_renyi":
        return erdos_renyi(cfg.n_banks, cfg.mean_degree, rng, cfg.directed)
    return core_periphery(cfg.n_banks, cfg.core_fraction, cfg.core_density, cfg.edges_per_node,
                          rng)


def normalise_graph(graph: nx.Graph) -> tuple[nx.Graph, list]:
    """Relabel a user graph to nodes ``0..n-1``; returns it and the original labels."""
    if graph.number_of_nodes() < 2:
        raise ConfigError(f"graph must have at least 2 nodes, got {graph.number_of_nodes()}")
    labels = list(graph.nodes)
    mapping = {old: i for i, old in enumerate(labels)}
    g = nx.relabel_nodes(graph, mapping, copy=True)
    g.remove_edges_from(list(nx.selfloop_edges(g)))
    return g, labels


def graph_from_exposures(exposures: np.ndarray | sp.spmatrix) -> nx.DiGraph:
    """Directed graph with an edge i → j wherever ``exposures[i, j] > 0``."""
    E = sp.coo_matrix(exposures)
    g = nx.DiGraph()
    g.add_nodes_from(range(E.shape[0]))
    mask = E.data > 0
    g.add_edges_from(zip(E.row[mask].tolist(), E.col[mask].tolist(), strict=True))
    return g


def check_exposures(exposures: Any) -> np.ndarray:
    """A user exposure matrix as a dense float array, shape (n, n).

    Raises:
        ConfigError: not square, fewer than 2 banks, non-finite or negative
            entries, or a non-zero diagonal.
    """
    try:
        arr = exposures.toarray() if sp.issparse(exposures) else np.asarray(exposures)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"exposures must be a matrix of numbers: {err}") from None
    if arr.dtype.kind not in "biuf":
        raise ConfigError(f"exposures must hold real numbers, not {arr.dtype} values "
                          "(e.g. text or complex numbers)")
    arr = arr.astype(float)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 2:
        raise ConfigError(f"exposures must be a square (n, n) matrix with n >= 2, "
                          f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or (arr < 0).any():
        raise ConfigError("exposures must be finite and non-negative")
    if np.diag(arr).any():
        raise ConfigError("exposures must have a zero diagonal (a bank cannot lend to itself)")
    return arr


def user_network(graph: nx.Graph | None, exposures: Any, params: dict[str, Any]
                 ) -> tuple[nx.Graph | None, list | None, np.ndarray | None]:
    """A user's network (``graph=`` or ``exposures=``) checked and relabelled to
    banks 0..n-1; sets ``params["n_banks"]``. Returns (graph, original node
    labels, exposures as a dense array), all None when neither is given.

    Raises:
        ConfigError: not a networkx graph, bad exposures, or ``n_banks`` that
            disagrees with the network.
    """
    if exposures is not None:
        if graph is not None:
            raise ConfigError("give graph= or exposures=, not both: exposures define the "
                              "network (a link wherever exposures[i, j] > 0)")
        exposures = check_exposures(exposures)
        graph = graph_from_exposures(exposures)
    if graph is None:
        return None, None, None
    if not isinstance(graph, nx.Graph):
        raise ConfigError(f"graph must be a networkx graph, not {type(graph).__name__}")
    graph, labels = normalise_graph(graph)
    given = params.get("n_banks")
    if given is not None and given != graph.number_of_nodes():
        raise ConfigError(f"n_banks = {given} but the graph has "
                          f"{graph.number_of_nodes()} nodes; leave n_banks out")
    params["n_banks"] = graph.number_of_nodes()
    params.setdefault("topology", "user")
    return graph, labels, exposures


@dataclass(frozen=True)
class Adjacency:
    """The interbank network as arrays: both directions of every link.

    Attributes:
        src, dst: shape (2e,), one entry per link and direction (lending can
            go either way along a link).
        matrix: shape (n, n), CSR, 1 where two banks are linked.
        degree: shape (n,), number of links of each bank.
    """

    src: np.ndarray
    dst: np.ndarray
    matrix: sp.csr_matrix
    degree: np.ndarray

    @classmethod
    def from_graph(cls, graph: nx.Graph, n: int) -> Adjacency:
        """The adjacency of ``graph`` (nodes 0..n-1; direction ignored)."""
        und = nx.to_undirected(graph) if graph.is_directed() else graph
        edges = np.asarray(list(und.edges()), dtype=np.int64).reshape(-1, 2)
        src = np.concatenate([edges[:, 0], edges[:, 1]])
        dst = np.concatenate([edges[:, 1], edges[:, 0]])
        matrix = sp.csr_matrix((np.ones(src.size), (src, dst)), shape=(n, n))
        return cls(src, dst, matrix, np.asarray(matrix.sum(axis=1)).reshape(-1))

    def neighbours_in(self, mask: np.ndarray) -> np.ndarray:
        """How many of each bank's neighbours are in ``mask`` (shape (n,), bool),
        shape (n,), float: ``matrix @ mask`` counted along the link list (whole
        numbers, so exactly the same), without SciPy's sparse product."""
        if not self.src.size or not np.count_nonzero(mask):
            return np.zeros(self.degree.size)
        return np.bincount(self.src, weights=mask[self.dst], minlength=self.degree.size)


def oriented_edges(graph: nx.Graph, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lender and borrower index arrays, one entry per lending relation.

    Directed graphs keep their direction; each undirected edge gets a random one.
    """
    if graph.number_of_edges() == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    e = np.asarray(list(graph.edges()), dtype=np.int64)
    if graph.is_directed():
        return e[:, 0], e[:, 1]
    flip = rng.random(len(e)) < 0.5
    lender = np.where(flip, e[:, 1], e[:, 0])
    borrower = np.where(flip, e[:, 0], e[:, 1])
    return lender, borrower
