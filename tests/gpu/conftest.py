import pytest


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the GPU machine: ../shared/gpu/README.md)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
