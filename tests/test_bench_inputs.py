"""What the benchmark command refuses before it measures anything: names it does not know,
and shards whose images are not the size the configurations that read them take."""
from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.config import BenchConfig
from benchmarks.modes import MODES
from plumbing.errors import UserError

from conftest import assert_user_error, call_cli


def test_unknown_mode_or_model_is_one_clear_line(tmp_path):
    result = call_cli("benchmarks", "run", "--modes", "session", "--out", str(tmp_path))
    assert_user_error(result, "session", line="error: unknown mode session: expected one of " + ", ".join(MODES))
    assert_user_error(call_cli("benchmarks", "run", "--models", "alexnet", "--out", str(tmp_path)), "alexnet")
    assert not any(tmp_path.iterdir())



def test_shards_of_another_image_size_are_refused_before_any_model_is_built(shard_dir, tmp_path):
    """The quick preset trains ResNet50 at 64 px from the shards; these hold 32 px images."""
    manifest = str(shard_dir / "manifest.json")
    run = ("benchmarks", "run", "--preset", "quick", "--manifest", manifest, "--models", "resnet50",
           "--modes", "graph", "--out", str(tmp_path / "out"))
    line = assert_user_error(call_cli(*run), manifest)
    assert "hold 32x32x3 images" in line and "take 64x64x3" in line and "--image-size 32" in line
    line = assert_user_error(call_cli(*run, "--image-size", "48"), "--image-size")
    assert "48 px" in line and "hold 32x32x3 images" in line
    assert not any(tmp_path.iterdir())
    # a configuration given to the runner directly: its worker refuses the shards (ResNet50 pools
    # globally, so it would otherwise run them, under a key that names another size)
    from benchmarks.measure.batches import train_dataset
    fits = BenchConfig(model="resnet50", image_size=32, batch=2, data="pipeline", manifest=manifest)
    assert tuple(train_dataset(fits).element_spec[0].shape[1:]) == (32, 32, 3)
    with pytest.raises(UserError, match="hold 32x32x3 images, not the configuration's 64x64x3"):
        train_dataset(replace(fits, image_size=64))
