"""The GPU paths, chosen automatically: there is no GPU here, so CUDA and faiss-GPU are stood in
for at their boundary (torch.cuda's queries, faiss.index_cpu_to_gpu) and the wiring around them
is checked: the device and precision chosen, the exact index copied to the GPU once per opened
index, CPU search where the GPU cannot answer (k above its limit, approximate kinds)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_index import brute_force_top_k, face_table, tiny_spec, unit_vectors

from engine.faces import factories
from engine.faces.index import write_index
from engine.faces.query import search


def test_auto_picks_cuda_and_mixed_precision_when_cuda_is_present(monkeypatch):
    import torch

    from engine.faces.models import autocast_dtype, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert autocast_dtype("cuda") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert autocast_dtype("cuda:0") is torch.float16
    assert autocast_dtype("cpu") is None


class GpuIndexFlatIP:
    """Stands in for faiss's GPU copy (its type name is how the engine recognises one); searches
    the CPU index it was copied from."""

    copies = 0

    def __init__(self, index):
        type(self).copies += 1
        self.index = index
        self.searches = 0

    def search(self, queries, k):
        assert k <= factories.GPU_MAX_K, "the GPU cannot answer more than GPU_MAX_K"
        self.searches += 1
        return self.index.search(queries, k)


@pytest.fixture
def fake_gpu(monkeypatch):
    import faiss

    GpuIndexFlatIP.copies = 0
    monkeypatch.setattr(factories, "gpu_available", lambda: True)
    monkeypatch.setattr(factories, "_gpu_resources", lambda: None)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", lambda resources, device, index: GpuIndexFlatIP(index),
                        raising=False)
    return GpuIndexFlatIP


def test_an_exact_index_is_searched_on_one_gpu_copy(indexes_dir, fake_gpu):
    vectors = unit_vectors(300, 16)
    index = write_index(indexes_dir / "g", vectors, face_table([f"/d/{i}.jpg" for i in range(300)]),
                        model=tiny_spec().describe(), dataset={"kind": "folder", "spec": "folder:g"})
    queries = unit_vectors(5, 16, seed=3)
    for _ in range(3):
        scores, ids = search(index, queries, 10)
        np.testing.assert_array_equal(ids, brute_force_top_k(vectors, queries, 10)[1])
    assert fake_gpu.copies == 1 and index._search_copy.searches >= 3


def test_k_above_the_gpu_limit_and_approximate_kinds_stay_on_the_cpu(indexes_dir, fake_gpu, monkeypatch):
    import faiss

    monkeypatch.setattr(factories, "GPU_MAX_K", 8)
    vectors = unit_vectors(300, 16)
    index = write_index(indexes_dir / "g", vectors, face_table([f"/d/{i}.jpg" for i in range(300)]),
                        model=tiny_spec().describe(), dataset={"kind": "folder", "spec": "folder:g"})
    scores, ids = search(index, unit_vectors(4, 16, seed=5), 20)  # fetches > 8: the CPU answers
    np.testing.assert_array_equal(ids, brute_force_top_k(vectors, unit_vectors(4, 16, seed=5), 20)[1])
    assert fake_gpu.copies == 0
    hnsw = faiss.index_factory(16, "HNSW8,Flat", faiss.METRIC_INNER_PRODUCT)
    hnsw.add(vectors)
    assert factories.search_backend(hnsw, 5) is hnsw
