"""Checkpoints: round trip, atomic save, and every way a file can be wrong -> one-line CheckpointError."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders import CheckpointError, create_model, file_sha256, load_checkpoint, save_checkpoint
from encoders.checkpoint import FORMAT

TINY = {"width": 0.125, "image_size": 64}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Payload:
    """Unpickling this runs ``open(path, "w")``, i.e. creates a file: a real (harmless) code-execution payload."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _trained_like(name: str, seed: int = 0):
    model = create_model(name, seed=seed, **TINY)
    g = torch.Generator().manual_seed(seed)
    model.set_audio_stats(torch.randn(64, generator=g) - 6, torch.rand(64, generator=g) + 0.5)
    model.train()  # move the batch-norm running stats away from their defaults
    with torch.no_grad():
        model(model.image_features(torch.rand(4, 3, 64, 64, generator=g)), torch.randn(4, 64, 100, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    path = tmp_path_factory.mktemp("ckpt") / "m5.pt"
    model = _trained_like("m5-attention-linear-infonce")
    save_checkpoint(path, model, {"data": "lists/train.csv", "epochs": 3})
    return path, model


def _error(path: Path) -> str:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path) + ": ")
    return message


@pytest.mark.parametrize("name", ["m1-baseline-linear-bce", "m5-attention-linear-infonce"])
def test_round_trip_gives_identical_outputs(tmp_path: Path, name: str) -> None:
    model = _trained_like(name, seed=3)
    facts = {"data": Path("lists/train.csv"), "epochs": np.int64(12), "metric": {"val_top10": np.float32(0.25)},
             "history": (1, 2.5)}
    digest = save_checkpoint(tmp_path / "run" / "best.pt", model, facts)
    path = tmp_path / "run" / "best.pt"
    assert os.listdir(path.parent) == ["best.pt"]  # no temporary file left behind
    assert digest == file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()

    loaded, info = load_checkpoint(path)
    assert not loaded.training and type(loaded) is type(model)
    assert info.name == name and info.config == model.config and info.sha256 == digest and info.path == path
    assert info.training["data"] == "lists/train.csv" and info.training["epochs"] == 12
    assert info.training["metric"] == {"val_top10": pytest.approx(0.25)} and info.training["history"] == [1, 2.5]
    assert info.training["date"].startswith("20") and "code_version" in info.training
    assert info.audio_mean == pytest.approx(model.audio_mean.tolist())
    assert info.audio_std == pytest.approx(model.audio_std.tolist())

    g = torch.Generator().manual_seed(9)
    images, feats = torch.rand(3, 3, 64, 64, generator=g), torch.randn(3, 64, 100, generator=g) - 5
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(loaded.image_features(images)),
                           model.encode_image(model.image_features(images)))
        assert torch.equal(loaded.encode_audio(feats), model.encode_audio(feats))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_save_is_atomic_and_refuses_non_builtin_facts(tmp_path: Path, saved) -> None:
    path, model = saved
    target = tmp_path / "model.pt"
    first = save_checkpoint(target, model)
    with pytest.raises(ValueError, match="plain builtins"):
        save_checkpoint(target, model, {"optimizer": object()})
    assert file_sha256(target) == first and os.listdir(tmp_path) == ["model.pt"]  # old file intact, no debris
    other = create_model("m5-attention-linear-infonce", seed=99, **TINY)
    second = save_checkpoint(target, other)  # overwrite in place
    assert second != first and load_checkpoint(target)[1].sha256 == second


def test_missing_empty_and_folder(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert "empty" in _error(tmp_path / "empty.pt")
    (tmp_path / "dir.pt").mkdir()
    assert "folder" in _error(tmp_path / "dir.pt")


def test_truncated_and_corrupt_files(tmp_path: Path, saved) -> None:
    data = saved[0].read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _error(tmp_path / "half.pt")
    (tmp_path / "tail.pt").write_bytes(data[:-20])
    assert "truncated or corrupt" in _error(tmp_path / "tail.pt")
    flipped = bytearray(data)
    middle = len(data) // 2
    flipped[middle:middle + 64] = bytes(b ^ 0xFF for b in flipped[middle:middle + 64])  # inside the tensor data
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    assert "corrupt" in _error(tmp_path / "flipped.pt")


def test_foreign_files_are_not_soundlib_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    assert "not a soundlib checkpoint" in _error(tmp_path / "random.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    assert "without the soundlib header" in _error(tmp_path / "foreign.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    assert "not a soundlib checkpoint" in _error(tmp_path / "tensor.pt")
    import zipfile

    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
    assert "not a torch file" in _error(tmp_path / "other.zip")


def test_malicious_pickles_are_never_executed(tmp_path: Path) -> None:
    # control: the payload really does create its file when unpickled the unsafe way
    control = tmp_path / "control-was-run"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists()

    marker = tmp_path / "payload-was-run"
    # 1. inside a torch zip archive, next to a soundlib-looking header: weights_only refuses the global
    torch.save({"format": FORMAT, "version": 1, "state_dict": {}, "x": _Payload(marker)}, tmp_path / "evil.pt")
    message = _error(tmp_path / "evil.pt")
    assert "refused" in message and "open" in message
    # 2. a bare pickle (any protocol): refused before any unpickling
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        (tmp_path / f"evil{protocol}.pkl").write_bytes(pickle.dumps({"format": FORMAT, "x": _Payload(marker)},
                                                                    protocol=protocol))
        assert "refused" in _error(tmp_path / f"evil{protocol}.pkl")
    assert not marker.exists()


def _tamper(src: Path, dst: Path, edit) -> Path:
    payload = torch.load(src, weights_only=True)
    edit(payload)
    torch.save(payload, dst)
    return dst


def test_tampered_checkpoints_name_the_model_and_the_problem(tmp_path: Path, saved) -> None:
    src, _ = saved
    name = "m5-attention-linear-infonce"
    key = "visual.head.embed.0.weight"

    def reshape(p):
        p["state_dict"][key] = torch.zeros(7, 5)

    message = _error(_tamper(src, tmp_path / "shape.pt", reshape))
    assert name in message and key in message and "[7, 5]" in message

    def drop(p):
        del p["state_dict"]["audio.global_feature.conv.bias"]

    message = _error(_tamper(src, tmp_path / "missing.pt", drop))
    assert name in message and "missing weights audio.global_feature.conv.bias" in message

    def extra(p):
        p["state_dict"]["sneaky.weight"] = torch.zeros(1)

    assert "unexpected weights sneaky.weight" in _error(_tamper(src, tmp_path / "extra.pt", extra))

    def wider(p):
        p["config"]["width"] = 0.25  # the config no longer describes these weights

    message = _error(_tamper(src, tmp_path / "width.pt", wider))
    assert "do not match model " + name in message and "shape" in message

    def bad_loss(p):
        p["config"]["loss"] = "hinge"

    assert "invalid model configuration" in _error(_tamper(src, tmp_path / "loss.pt", bad_loss))

    def unknown_field(p):
        p["config"]["dropout"] = 0.5

    assert "invalid model configuration" in _error(_tamper(src, tmp_path / "field.pt", unknown_field))

    def newer(p):
        p["version"] = 2

    assert "unsupported soundlib checkpoint version 2" in _error(_tamper(src, tmp_path / "v2.pt", newer))

    def no_training(p):
        del p["training"]

    assert "missing training" in _error(_tamper(src, tmp_path / "notrain.pt", no_training))


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path) -> None:
    """The target is replaced only when the block ends; a failure leaves the old file and no temporary file."""
    import numpy as np

    from encoders.atomic import atomic_write

    target = tmp_path / "sub" / "x.npy"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".npy" and not target.exists()
        np.save(tmp, np.arange(3))  # numpy keeps a name that ends in .npy as it is
    assert np.array_equal(np.load(target), np.arange(3))
    with pytest.raises(RuntimeError):
        with atomic_write(target, fsync=True) as tmp:
            np.save(tmp, np.arange(5))
            raise RuntimeError("interrupted")
    assert np.array_equal(np.load(target), np.arange(3))
    assert [p.name for p in target.parent.iterdir()] == ["x.npy"]
