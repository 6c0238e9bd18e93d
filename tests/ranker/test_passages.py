from brainrank.index.records import Document
from brainrank.ranker.retrieval.passages import PassageSplitter
from tests.conftest import ingest, make_config

FILLER = " ".join(
    f"Sentence {i} talks about shipping boxes and parcel tracking." for i in range(80)
)


def test_short_document_is_one_passage(encoder):
    doc = Document("a", "Refund policy", "Money back within 60 days.")
    assert PassageSplitter(encoder.tokenizer, 256).split([doc]) == [[doc.full_text]]


def test_long_document_passages_fit_the_window_and_cover_the_body(encoder):
    doc = Document("b", "Shipping guide", FILLER + " The secret word is marzipan.")
    splitter = PassageSplitter(encoder.tokenizer, 128, overlap=16, max_passages=50)
    (passages,) = splitter.split([doc])
    assert passages[0] == doc.full_text and len(passages) > 3
    for p in passages[1:]:
        assert p.startswith("Shipping guide\n")
        assert len(encoder.tokenize([p])[0]) <= 128  # never truncated by the encoder
    assert "marzipan" in passages[-1]


def test_passage_count_is_capped(encoder):
    doc = Document("c", "Guide", FILLER)
    (passages,) = PassageSplitter(encoder.tokenizer, 64, max_passages=3).split([doc])
    assert len(passages) == 3


def test_dense_search_finds_text_beyond_the_first_window(tmp_path, encoder, sample_docs):
    tail = "Our warehouse cat, Biscuit, sleeps on the returns counter every afternoon."
    # About 400 tokens: past the first 256-token window, within the default 4 passages.
    body = " ".join(FILLER.split(". ")[:30]) + ". " + tail
    long_doc = Document("long", "Warehouse notes", body)
    cfg = make_config(tmp_path / "ws")
    ingest(cfg, encoder, [long_doc, *sample_docs[:30]])
    from brainrank.ranker.retrieval.search import SearchEngine

    engine = SearchEngine(cfg, encoder=encoder)
    assert (
        engine.generation.vectors.rows(engine.generation.doc_ids.index("long")).stop
        - engine.generation.vectors.rows(engine.generation.doc_ids.index("long")).start
        > 1
    )
    hit = engine.search("cat sleeping on the returns desk", k=1, mode="dense").hits[0]
    assert hit.doc_id == "long"


def test_splitting_a_chunk_at_a_time_gives_the_same_passages(encoder, monkeypatch):
    docs = [Document(str(i), f"Title {i}", FILLER[: 200 + 97 * i] + f" word{i}") for i in range(9)]
    splitter = PassageSplitter(encoder.tokenizer, 64, overlap=8, max_passages=6)
    whole = splitter.split(docs)
    monkeypatch.setattr(PassageSplitter, "CHUNK", 2)
    assert splitter.split(docs) == whole
    assert any(len(p) > 2 for p in whole)  # the documents really were split
