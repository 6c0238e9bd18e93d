"""brainrank: hybrid search (BM25 + dense) with a learned relevance model and a ranking debugger.

    import brainrank

    with brainrank.open("brainrank-data/sample") as engine:
        result = engine.search("laptop won't turn on", k=5)
        for hit in result.hits:
            print(hit.rank, hit.doc_id, result.documents[hit.doc_id].title, hit.score)

Everything named in ``__all__`` is the stable public API; the subpackages (``brainrank.index``,
``brainrank.ranker``, ``brainrank.debugger_ui``) are internal.
"""

from brainrank.index.errors import BrainrankError, IndexMismatchError, InputError
from brainrank.index.records import Document, Hit
from brainrank.ranker.config import Config, load_config
from brainrank.ranker.engine import Engine, open
from brainrank.ranker.retrieval.result import SearchResult

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
    "__version__",
    "load_config",
    "open",
]
