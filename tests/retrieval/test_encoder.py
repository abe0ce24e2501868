import numpy as np
import pytest

from domainkd.errors import DomainKDError
from domainkd.retrieval import load_encoder
from domainkd.retrieval.encoder import normalise_rows


def test_vectors_are_unit_float32_and_deterministic(tiny_encoder):
    vectors = tiny_encoder.encode(["Paris is the capital of France", "a boring film", "Paris is the capital of France"])
    assert vectors.shape == (3, tiny_encoder.dimension) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])
    assert tiny_encoder.encode([]).shape == (0, tiny_encoder.dimension)


def test_identity_names_the_reference_and_weights(tiny_encoder):
    identity = tiny_encoder.identity()
    assert identity["reference"] == tiny_encoder.reference
    assert any(name.endswith(".safetensors") for name, _, _ in identity["files"])


def test_normalise_rows_keeps_zero_rows():
    vectors = normalise_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(vectors, [[0.6, 0.8], [0.0, 0.0]])


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("smollm2-135m-instruct", "is a causal-lm, not a sentence encoder"),
        ("no-such-encoder", "unknown model 'no-such-encoder'"),
    ],
)
def test_bad_references_are_one_clear_error(reference, message):
    with pytest.raises(DomainKDError, match=message):
        load_encoder(reference)


def test_directory_without_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(DomainKDError, match="no .safetensors weights"):
        load_encoder(str(tmp_path))
