"""CelebA (or any image folder) -> 64x64 uint8 shards -> shuffled float32 NCHW batches in [-1, 1].

Prepare once (in parallel, cached; see :mod:`rawgan.data.preparation` for the exact crop/resize)::

    python -m rawgan.data prepare --data celeba --data-dir DIR

then train from the shards::

    from rawgan.data import ensure_prepared, ShardDataset, BatchLoader
    ds = ShardDataset(ensure_prepared("celeba", data_dir))
    loader = BatchLoader(ds, batch_size=64, seed=0)
    for x in loader.epoch_batches(epoch):   # float32 (64, 3, 64, 64) in [-1, 1]
        ...

Every user-facing problem raises :class:`DataError`, whose message is one printable line.

Modules: ``sources`` (finding and listing raw images), ``preparation`` (decode/crop/resize, parallel,
cached), ``shards`` (on-disk format, ShardDataset), ``loader`` (BatchLoader), ``images`` (back to
pictures: to_uint8_nhwc, save_grid), ``__main__`` (the command line).
"""
from .errors import CELEBA_URL, DataError
from .images import make_grid, save_grid, to_uint8_nhwc
from .loader import BatchLoader, to_float_nchw
from .preparation import (PrepareResult, default_cache_dir, default_data_dir, default_prepared_dir,
                      ensure_prepared, prepare, prepare_dataset)
from .shards import ShardDataset

__all__ = [
    "CELEBA_URL", "DataError", "BatchLoader", "ShardDataset", "PrepareResult",
    "default_cache_dir", "default_data_dir", "default_prepared_dir", "ensure_prepared",
    "prepare", "prepare_dataset", "make_grid", "save_grid", "to_float_nchw", "to_uint8_nhwc",
]
