"""A ranker folder on disk: weights, parameters and the portable files the query path reads.

Weights only: the model is always built in code from ``ranker.json``, so no file can name code
for Keras to import (a .keras config can, whatever safe_mode says).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from brainrank.index.atomic import atomic_directory
from brainrank.index.errors import BrainrankError
from brainrank.ranker.learning.portable_export import write_portable
from brainrank.ranker.learning.ranker_params import PARAMS_FILE, params_json, read_params

if TYPE_CHECKING:
    from brainrank.ranker.learning.tfr_model import ListwiseRanker

WEIGHTS_FILE = "ranker.weights.h5"
# Rankers saved before WEIGHTS_FILE: only the weights inside are read, never its config.
LEGACY_MODEL_FILE = "model.keras"

log = logging.getLogger(__name__)


def save_ranker(ranker: ListwiseRanker, directory: Path) -> None:
    """Write the weights and ``ranker.json`` into a new folder and rename it into place.

    The folder also gets the portable ``weights.npz`` and ``portable.json`` the query path
    scores with, checked against this model's scores (see ``portable``; a failed check raises
    BrainrankError and leaves the folder as it was). Optimizer state is not kept: a loaded
    ranker trains on with a fresh Adam.
    """
    with atomic_directory(Path(directory)) as staged:
        ranker.model.save_weights(str(staged / WEIGHTS_FILE))
        text = params_json(ranker.n_features, ranker.params)
        (staged / PARAMS_FILE).write_text(text, encoding="utf-8")
        write_portable(ranker, staged)


def load_ranker(cls: type[ListwiseRanker], directory: Path) -> ListwiseRanker:
    """Read a folder written by ``save_ranker``; problems raise BrainrankError naming the path.

    The model is built in code from ``ranker.json`` and only its weights are read (from
    ``ranker.weights.h5``, or from inside an older folder's ``model.keras``, whose saved model
    config is never deserialized).
    """
    directory = Path(directory)
    meta_path = directory / PARAMS_FILE
    if not directory.is_dir():
        raise BrainrankError(f"ranker folder {directory} does not exist")
    if not meta_path.is_file():
        raise BrainrankError(f"ranker folder {directory} has no {PARAMS_FILE}")
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        weights = directory / LEGACY_MODEL_FILE
        if not weights.is_file():
            raise BrainrankError(f"ranker folder {directory} has no {WEIGHTS_FILE}")
    n_features, params = read_params(meta_path)
    if weights.name == LEGACY_MODEL_FILE:
        if not zipfile.is_zipfile(weights):
            raise BrainrankError(f"cannot load ranker model {weights}: not a .keras archive")
        log.warning(
            "%s was saved before weights-only rankers: reading only the weights inside it "
            "into a model built from %s (its saved Keras config is ignored)",
            weights,
            PARAMS_FILE,
        )
    ranker = cls.assemble(n_features, params)
    try:
        ranker.model.load_weights(str(weights))
    except Exception as exc:  # h5py and Keras raise many types for a broken or foreign file
        raise BrainrankError(f"cannot load ranker weights {weights}: {exc}") from exc
    return ranker
