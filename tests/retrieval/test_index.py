import numpy as np
import pytest

from domainkd.errors import DomainKDError
from domainkd.retrieval import IndexSettings, VectorIndex, build_index
from domainkd.retrieval.encoder import normalise_rows
from domainkd.retrieval.index import factory_string


def unit_vectors(count: int, dimension: int = 16, seed: int = 0) -> np.ndarray:
    return normalise_rows(np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32))


def test_flat_below_the_limit_ivf_above():
    settings = IndexSettings(flat_limit=1000)
    assert factory_string(1000, settings) == "Flat"
    assert factory_string(1_000_000, settings) == "IVF4000,Flat"
    assert factory_string(1_000_000, IndexSettings(flat_limit=1000, codec="sq8", nlist=512)) == "IVF512,SQ8"
    assert (
        factory_string(2000, IndexSettings(flat_limit=10, nlist=4096)) == "IVF50,Flat"
    )  # 40 training vectors per cell


def test_flat_index_is_exact_and_skips_excluded_ranges(tmp_path):
    vectors = unit_vectors(300)
    assert build_index(vectors.astype(np.float16), tmp_path / "index.faiss") == "Flat"
    index = VectorIndex(tmp_path / "index.faiss")
    similarities, ids = index.search(vectors[[5, 250]], k=3)
    assert list(ids[:, 0]) == [5, 250]
    exact = np.argsort(-(vectors @ vectors[5]))[:3]
    assert list(ids[0]) == list(exact)
    np.testing.assert_allclose(similarities[0, 0], 1.0, atol=1e-3)  # float16 storage
    _, ids = index.search(vectors[[5, 250]], k=10, exclude=[(0, 10), (200, 300)])
    assert not np.isin(ids, list(range(10)) + list(range(200, 300))).any()
    np.testing.assert_array_equal(index.reconstruct(np.array([7, 3])), vectors[[7, 3]].astype(np.float16))


def test_ivf_index_finds_each_vector_and_honours_exclusions(tmp_path):
    vectors = unit_vectors(2000)
    description = build_index(vectors, tmp_path / "index.faiss", IndexSettings(flat_limit=100, nlist=8))
    assert description == "IVF8,Flat"
    index = VectorIndex(tmp_path / "index.faiss", nprobe=8)  # every cell: exact
    assert len(index) == 2000
    _, ids = index.search(vectors[:50], k=1)
    assert list(ids[:, 0]) == list(range(50))
    _, ids = index.search(vectors[:50], k=5, exclude=[(0, 50)])
    assert ids.min() >= 50
    np.testing.assert_array_equal(index.reconstruct(np.array([1999, 0, 640])), vectors[[1999, 0, 640]])


def test_sq8_codec_reconstructs_approximately(tmp_path):
    vectors = unit_vectors(2000)
    settings = IndexSettings(flat_limit=100, nlist=8, codec="sq8")
    assert build_index(vectors, tmp_path / "index.faiss", settings) == "IVF8,SQ8"
    error = np.abs(VectorIndex(tmp_path / "index.faiss").reconstruct(np.arange(2000)) - vectors)  # (N, D)
    assert 0 < error.mean() < 0.01  # 8-bit codes; values outside the trained range are clipped


def test_no_vectors_and_no_index_are_clear_errors(tmp_path):
    with pytest.raises(DomainKDError, match="no vectors to index"):
        build_index(np.zeros((0, 4), dtype=np.float32), tmp_path / "index.faiss")
    with pytest.raises(DomainKDError, match="does not exist"):
        VectorIndex(tmp_path / "missing.faiss")


def test_scan_cap_stops_at_swollen_cells_without_losing_the_nearest(tmp_path):
    import faiss

    distinct = unit_vectors(2000)
    label = distinct[:1] * 0.6 + unit_vectors(1)[:1] * 0.8  # a value repeated in 6,000 rows, e.g. "positive"
    label /= np.linalg.norm(label)
    vectors = np.concatenate([distinct, np.repeat(label, 6000, axis=0)]).astype(np.float32)
    build_index(vectors, tmp_path / "index.faiss", IndexSettings(flat_limit=100, nlist=16))
    query = label + 0.01 * unit_vectors(1)[:1]
    scanned = {}
    for factor in (0.0, 0.5):
        index = VectorIndex(tmp_path / "index.faiss", nprobe=4, scan_factor=factor)
        faiss.cvar.indexIVF_stats.reset()
        _, ids = index.search(query.astype(np.float32), k=5)
        scanned[factor] = faiss.cvar.indexIVF_stats.ndis
        assert ids[0, 0] >= 2000  # the repeated value is still what the query finds
        _, ids = index.search(distinct[[7, 1500]], k=1)
        assert list(ids[:, 0]) == [7, 1500]
    assert scanned[0.5] < scanned[0.0]


def test_an_index_is_read_into_memory_when_it_fits_and_memory_mapped_otherwise(tmp_path, monkeypatch):
    from domainkd.retrieval import index as index_module

    vectors = unit_vectors(300, seed=3)
    build_index(vectors, tmp_path / "index.faiss", IndexSettings(flat_limit=100, nlist=4, train_per_cell=30))
    assert VectorIndex(tmp_path / "index.faiss").in_memory  # a few kB
    monkeypatch.setattr(index_module, "available_memory", lambda: 1000)
    mapped = VectorIndex(tmp_path / "index.faiss")
    loaded = VectorIndex(tmp_path / "index.faiss", in_memory=True)
    assert not mapped.in_memory and loaded.in_memory
    for index in (mapped, loaded):
        index.nprobe = 4
    np.testing.assert_array_equal(mapped.search(vectors[:5], 3)[1], loaded.search(vectors[:5], 3)[1])
