"""Universal Transformers, Transformers and WikiSum models (see README.md). ``from ut import load``: a trained model
(:mod:`ut.pretrained`), imported on first use so that ``import ut.models`` stays light."""

__all__ = ["UTModel", "load"]


def __getattr__(name: str):
    if name in __all__:
        from ut import pretrained

        return getattr(pretrained, name)
    raise AttributeError(f"module 'ut' has no attribute {name!r}")
