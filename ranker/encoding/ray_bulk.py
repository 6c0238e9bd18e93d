"""Bulk embedding spread over a Ray cluster: Ray Data batches over a pool of encoder actors.

``brainrank ingest --ray`` and ``reindex --ray`` embed with :class:`RayBulkEncoder`, which has
the interface of the single-process bulk encoder (``encode``, ``tokenizer``, ``fingerprint``,
``name``, ``dim``, ``precision``), so indexing does not know where the vectors were computed.
Each actor loads one encoder from the same folder with the same ``[encoder]`` settings as the
single-process path (``bulk.load_bulk_encoder``), in the precision the driver resolved, and a
vector does not depend on its batch-mates (only padding differs: cosine >= 0.9999), so the
vectors are the ones a single process computes. Passages travel as (position, text) rows
and come back as (position, vector) rows, scattered into their positions as each batch arrives.

A worker that dies mid-batch (killed, out of memory, its node lost) is restarted and the batch
runs again on it: the actors are created with ``max_restarts`` and their calls with
``max_task_retries``. A batch that keeps killing its worker fails the run, and with it the
ingest, which leaves what served before serving.

Ray is an optional extra (``pip install 'brainrank[ray]' -c constraints.txt``) and is imported
only here, inside functions.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from brainrank.index.errors import BrainrankError
from brainrank.ranker.config import ClusterConfig, EncoderConfig
from brainrank.ranker.encoding.bulk import bulk_context, load_bulk_encoder

RAY_MISSING = "Ray is not installed: pip install 'brainrank[ray]' -c constraints.txt"
# Restarts of one actor over a run, and runs of one batch after the first: enough for a few
# lost workers, bounded so that a batch that kills every worker it meets stops the ingest.
MAX_RESTARTS = 8
MAX_TASK_RETRIES = 3

# What an actor calls to get its encoder: (folder, [encoder] settings, threads) -> encoder.
Loader = Callable[[Path, EncoderConfig, int], object]


def import_ray():
    """The ``ray`` module with Ray Data, or a BrainrankError naming the install command."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra's other half)
    except ImportError as exc:
        raise BrainrankError(RAY_MISSING) from exc
    return ray


def local_cpus(cluster: ClusterConfig) -> int:
    """CPUs of a local cluster: those the configured actors reserve, else this machine's."""
    if cluster.actors:
        return cluster.actors * cluster.cpus_per_actor
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """Raise a BrainrankError when nothing listens at a ``HOST:PORT`` or ``ray://HOST:PORT``
    address: ``ray.init`` would retry it for minutes. Other addresses are left to Ray."""
    import socket

    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BrainrankError(
            f"no Ray cluster answers at {address} ({exc}); give the head node's address "
            "(HOST:6379, ray://HOST:10001 or auto) with --ray-address or [cluster] ray_address"
        ) from None


@contextmanager
def ray_session(address: str | None, *, cpus: int) -> Iterator[bool]:
    """Connected to Ray: an open session as it is, else the cluster at ``address``, else (no
    address) a local cluster of ``cpus`` CPUs. Yields whether the session was started here; one
    started here is shut down on exit."""
    ray = import_ray()
    if ray.is_initialized():
        yield False
        return
    check_address(address)
    try:
        if address and address != "local":
            ray.init(address=address)
        else:  # "local" starts a new cluster even where RAY_ADDRESS names one
            ray.init(address="local", num_cpus=cpus, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
        raise BrainrankError(f"cannot connect to {where}: {exc}") from exc
    try:
        yield True
    finally:
        ray.shutdown()


def _load_encoder(path: Path, cfg: EncoderConfig, threads: int):
    return load_bulk_encoder(path, cfg, threads=threads)


class EncodeBatches:
    """A Ray Data actor: one bulk encoder, embedding (pos, text) batches into (pos, vec)."""

    def __init__(self, path: Path, cfg: EncoderConfig, threads: int, load: Loader):
        self.encoder = load(path, cfg, threads)
        self.cfg = cfg

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        with bulk_context(self.encoder, self.cfg.bulk_precision):
            vectors = self.encoder.encode(texts, batch_size=self.cfg.batch_size)
        return {"pos": batch["pos"], "vec": np.asarray(vectors, dtype=np.float32)}


class RayBulkEncoder:
    """The bulk encoder of the folder at ``path`` whose ``encode`` runs on a Ray actor pool.

    A local encoder is loaded here as well: it gives the tokenizer the passages are split with,
    the fingerprint recorded in the index, and makes sure the export exists before the actors
    load it. ``encode`` connects to Ray for the run (``ray_session``), so nothing starts when
    an ingest has nothing to embed. ``load`` replaces how each actor loads its encoder.
    """

    remote = True  # bulk.bulk_context: the actors set their own precision

    def __init__(
        self,
        path: Path | str,
        cfg: EncoderConfig,
        cluster: ClusterConfig,
        *,
        address: str | None = None,
        load: Loader = _load_encoder,
    ):
        import_ray()  # fail before loading anything when the extra is missing
        self.path = Path(path).resolve()  # workers have other working directories
        self.cluster = cluster
        self.address = address if address is not None else cluster.ray_address or None
        self.load = load
        self.local = load_bulk_encoder(self.path, cfg, threads=1)
        self.name: str = self.local.name
        self.fingerprint: str = self.local.fingerprint
        self.dim: int = int(self.local.dim)
        self.max_length: int = self.local.max_length
        self.precision: str = _precision(self.local, cfg)
        # The actors embed in the precision ``auto`` chose here, whatever their nodes' CPUs.
        self.cfg = dataclasses.replace(cfg, bulk_precision=self.precision)

    @property
    def tokenizer(self):
        return self.local.tokenizer

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` as float32 [n, dim], row i for ``texts[i]``, on the actor pool.

        ``batch_size`` is each actor's encoder batch (default ``[encoder] batch_size``);
        ``progress(k)`` runs as each Ray Data batch of k texts comes back.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not a single string")
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        cfg = self.cfg if batch_size is None else _with_batch_size(self.cfg, batch_size)
        with ray_session(self.address, cpus=local_cpus(self.cluster)):
            done = np.zeros(len(texts), dtype=bool)
            for pos, vectors in self._batches(texts, cfg):
                new = int(np.count_nonzero(~done[pos]))  # a batch run twice counts once
                out[pos] = vectors
                done[pos] = True
                if progress is not None and new:
                    progress(new)
        if not done.all():
            raise BrainrankError(f"Ray returned {int(done.sum())} of {len(texts)} vectors")
        return out

    def _batches(self, texts: list[str], cfg: EncoderConfig) -> Iterator[tuple[np.ndarray, ...]]:
        """(positions, vectors) per batch, as the actors finish them."""
        import pyarrow as pa

        ray = import_ray()
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI draws its own bar
        context.print_on_execution_start = False
        rows = self.cluster.batch_rows
        # Longest first: similar lengths share a batch (less padding) and the slowest batches
        # start first, so no actor is left with a long one at the end.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        blocks = [
            pa.table({"pos": order[i : i + rows], "text": [texts[p] for p in order[i : i + rows]]})
            for i in range(0, len(order), rows)
        ]
        actors = self.cluster.actors or int(
            ray.cluster_resources().get("CPU", 1) // self.cluster.cpus_per_actor
        )
        threads = self.cluster.cpus_per_actor
        with warnings.catch_warnings():
            # Ray Data 2.60 takes restart and retry bounds only through its deprecated
            # **ray_remote_args (removed in 2.64, whose defaults retry without bound).
            warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
            dataset = ray.data.from_arrow(blocks).map_batches(
                EncodeBatches,
                batch_size=rows,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=max(1, min(actors, len(blocks)))),
                num_cpus=threads,
                fn_constructor_kwargs={
                    "path": self.path,
                    "cfg": cfg,
                    "threads": threads,
                    "load": self.load,
                },
                max_restarts=MAX_RESTARTS,
                max_task_retries=MAX_TASK_RETRIES,
            )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            yield batch["pos"].astype(np.int64), batch["vec"]


def _precision(encoder, cfg: EncoderConfig) -> str:
    """The precision the actors embed in: OpenVINO's compiled one, else the resolved setting."""
    if hasattr(encoder, "precision"):
        return encoder.precision
    from brainrank.ranker.encoding.precision import resolve_precision

    return resolve_precision(cfg.bulk_precision)


def _with_batch_size(cfg: EncoderConfig, batch_size: int) -> EncoderConfig:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return dataclasses.replace(cfg, batch_size=batch_size)


def ray_loader(cluster: ClusterConfig, address: str | None = None):
    """``(path, encoder settings) -> RayBulkEncoder``: what ingest and reindex load with --ray.
    Checks first that Ray is installed and the address answers, before an ingest reads or
    stores anything."""
    import_ray()
    check_address(address or cluster.ray_address)

    def load(path: Path, cfg: EncoderConfig) -> RayBulkEncoder:
        return RayBulkEncoder(path, cfg, cluster, address=address)

    return load
