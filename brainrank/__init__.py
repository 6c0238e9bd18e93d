"""brainrank: hybrid search (BM25 + dense) with a learned relevance model and a ranking debugger.

    import brainrank

    with brainrank.open("brainrank-data/sample") as engine:
        result = engine.search("laptop won't turn on", k=5)
        for hit in result.hits:
            print(hit.rank, hit.doc_id, result.documents[hit.doc_id].title, hit.score)

Everything named in ``__all__`` is the stable public API; the subpackages (``brainrank.index``,
``brainrank.ranker``, ``brainrank.debugger_ui``) are internal.
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) is noise for every caller; it
# is read when TensorFlow loads (bulk embedding, training), so set it before anything else.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# In a source checkout the subpackages are folders beside this one (setuptools maps them into
# the package when installing): let an import from the checkout's root find them there too.
_checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_checkout, "pyproject.toml")) and os.path.isdir(
    os.path.join(_checkout, "ranker")
):
    __path__.append(_checkout)

from brainrank.index.errors import BrainrankError, IndexMismatchError, InputError  # noqa: E402
from brainrank.index.records import Document, Hit  # noqa: E402
from brainrank.ranker.config import Config, load_config  # noqa: E402
from brainrank.ranker.engine import Engine, open  # noqa: E402
from brainrank.ranker.retrieval.result import SearchResult, Snippet  # noqa: E402

__version__ = "0.2.0"

__all__ = [
    "BrainrankError",
    "Config",
    "Document",
    "Engine",
    "Hit",
    "IndexMismatchError",
    "InputError",
    "SearchResult",
    "Snippet",
    "__version__",
    "load_config",
    "open",
]
