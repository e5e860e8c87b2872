"""The shipped synthetic localisation benchmark: deterministic images with exact boxes, and the
cached small GAP+FC model."""

import numpy as np
import torch

import actcam_ext as ac
from actcam_ext.evaluation import synthetic


def test_generator_is_deterministic_for_a_seed():
    a = synthetic.generate(6, seed=3)
    b = synthetic.generate(6, seed=3)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    c = synthetic.generate(6, seed=4)
    assert not torch.equal(a["images"], c["images"])
    # image i depends only on (seed, i): prefixes and offsets agree
    d = synthetic.generate(2, seed=3, start=4)
    assert torch.equal(d["images"], a["images"][4:]) and torch.equal(d["boxes"], a["boxes"][4:])
    assert a["images"].dtype == torch.float32 and a["images"].shape == (6, 3, 64, 64)
    assert 0 <= float(a["images"].min()) and float(a["images"].max()) <= 1
    assert set(synthetic.generate(60, seed=0)["labels"].tolist()) == set(range(len(synthetic.CLASSES)))


def test_generator_boxes_are_where_the_objects_are():
    seed, n, size = 5, 25, 64
    data = synthetic.generate(n, seed=seed, size=size)
    for i in range(n):
        with_obj, _, _, _ = synthetic._render(seed, i, size, with_object=True)
        without, _, _, _ = synthetic._render(seed, i, size, with_object=False)
        assert np.array_equal(with_obj, data["images"][i].numpy())
        # the pixels the object changed: inside the box and touching all four sides (tight box)
        ys, xs = np.nonzero((with_obj != without).any(axis=0))
        x0, y0, x1, y1 = data["boxes"][i].tolist()
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
        assert data["masks"][i].sum() > 50          # a real object, not a speck
        assert np.array_equal(np.nonzero(data["masks"][i].numpy())[0].min(), y0)


def test_synthetic_model_is_cached_and_reloaded(tiny_cache, tiny_config, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tiny_cache))
    path = synthetic.cache_dir() / f"synthetic-{tiny_config.key()}.pt"
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    model = synthetic.load_model(tiny_config, progress=False)
    assert path.stat().st_mtime_ns == stamp                      # loaded, not retrained
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    # other configs (and torch versions) get other files
    assert synthetic.SyntheticConfig(n_train=193, epochs=1).key() != tiny_config.key()
    # a GAP+FC network: CAM applies, and equals Grad-CAM after normalisation
    x = synthetic.generate(4, seed=1)["images"]
    torch.testing.assert_close(ac.CAM(model)(x), ac.GradCAM(model, "features")(x), atol=1e-4, rtol=0)
