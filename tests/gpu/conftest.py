import pytest


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    reason = "needs a CUDA GPU: on the GPU machine run `python -m pytest -m gpu tests/gpu` (../shared/gpu/README.md)"
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
