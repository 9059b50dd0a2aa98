"""Caches keyed by everything that changes the result: each part of a key, changed alone, is a miss.

The embedding cache (`diversity`), the FID reference statistics (`fid`) and the k=auto commitment records, and
`diversity-cli cache info | clear`."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diversity_cli.core import fingerprint
from diversity_cli.core.cache import cache_dir
from diversity_cli.core.config import compose
from diversity_cli.metrics import quality
from diversity_cli.metrics.embedders import BatchedEmbedder
from diversity_cli.metrics.reference import folder_reference, toy_reference

TOY_FEATURES = Path(__file__).resolve().parents[1] / "diversity_cli" / "assets" / "toy" / "features"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIVERSITY_CLI_CACHE", str(tmp_path / "cache"))
    fingerprint._memo.clear()  # each test sees its files afresh (the memo is per process)
    yield
    fingerprint._memo.clear()


def _bmp_folder(folder: Path, n: int = 4, seed: int = 0) -> list[Path]:
    """BMP files: their size depends only on the image size, so a changed image can keep size and mtime."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{i}.bmp"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _rewrite_keeping_stat(path: Path, seed: int) -> None:
    """New pixels, same byte count and mtime: only the bytes tell the file changed."""
    stat = path.stat()
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


# ------------------------------------------------------------------------------------------------ fingerprints


def test_file_hash_is_of_the_bytes_and_memoised_by_path_mtime_size(tmp_path, monkeypatch):
    (path,) = _bmp_folder(tmp_path / "a", 1)
    first = fingerprint.file_hash(path)
    copy = tmp_path / "copy.bmp"
    shutil.copy(path, copy)
    assert fingerprint.file_hash(copy) == first  # the bytes, not the name
    _rewrite_keeping_stat(path, seed=9)
    fingerprint._memo.clear()
    assert fingerprint.file_hash(path) != first
    # Large files keep their hash on disk: a later command reads it back instead of hashing gigabytes again.
    monkeypatch.setattr(fingerprint, "PERSIST_BYTES", 1)
    fingerprint._memo.clear()
    value = fingerprint.file_hash(path)
    index = json.loads(fingerprint.index_path().read_text())
    (key,) = index
    index[key] = "f" * 16  # a planted value is returned: the file is not read again
    fingerprint.index_path().write_text(json.dumps(index))
    fingerprint._memo.clear()
    assert fingerprint.file_hash(path) == "f" * 16 != value
    os.utime(path, ns=(1, 1))  # another mtime: another stamp, hashed afresh
    assert fingerprint.file_hash(path) == value


# ------------------------------------------------------------------------------------------- embedding cache


def _diversity(cli, folder: Path, *extra: str) -> float:
    out = folder.parent / "out"
    args = ("metric=toy_features", "bootstrap=0", "device=cpu", *extra)
    code, _, err = cli("diversity", f"images={folder}", f"out={out}", *args)
    assert code == 0, err
    with (out / "diversity.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    return float(row["value"])


def _forbid_embedding(monkeypatch) -> None:
    def fail(self, images):
        raise AssertionError("embedded again: the cache should have answered")

    monkeypatch.setattr(BatchedEmbedder, "__call__", fail)


def test_embedding_cache_misses_on_new_weights_images_libraries_and_preparation(cli, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    from diversity_cli.experiments import diversity

    folder = tmp_path / "imgs"
    paths = _bmp_folder(folder)
    weights = tmp_path / "features"
    shutil.copytree(TOY_FEATURES, weights)
    option = f"embedders.toy_features.path={weights}"
    first = _diversity(cli, folder, option)
    assert len(list(cache_dir("embeddings").glob("*.pt"))) == 1

    with monkeypatch.context() as patch:  # the same key: every embedding comes from the cache
        _forbid_embedding(patch)
        assert _diversity(cli, folder, option) == first

    # Weights replaced in place (same path, same options): other embeddings, another diversity.
    (file,) = weights.glob("*.safetensors")
    state = load_file(str(file))
    name = next(k for k, v in state.items() if v.dtype.is_floating_point and v.dim() > 1)
    state[name] = state[name] * 0.5 + 0.1
    save_file(state, str(file))
    with monkeypatch.context() as patch:
        _forbid_embedding(patch)
        with pytest.raises(AssertionError, match="embedded again"):
            _diversity(cli, folder, option)
    retrained = _diversity(cli, folder, option)
    assert retrained != pytest.approx(first, abs=1e-9)

    # An image's bytes change while its path, size and mtime do not: it is embedded again.
    _rewrite_keeping_stat(paths[0], seed=7)
    fingerprint._memo.clear()  # a new command in a new process
    with monkeypatch.context() as patch:
        _forbid_embedding(patch)
        with pytest.raises(AssertionError, match="embedded again"):
            _diversity(cli, folder, option)

    # Another library version, or another image preparation: a miss too.
    cached = _diversity(cli, folder, option)
    for attribute, value in (
        ("packages", lambda *names: {name: "99.0" for name in names}),
        ("IMAGE_PREPARATION", "another decode"),
    ):
        with monkeypatch.context() as patch:
            patch.setattr(diversity, attribute, value)
            _forbid_embedding(patch)
            with pytest.raises(AssertionError, match="embedded again"):
                _diversity(cli, folder, option)
    assert _diversity(cli, folder, option) == cached


# -------------------------------------------------------------------------------------- reference statistics


def _statistics(reference, resize: str = "pil_bicubic") -> bool:
    extractor = quality.load_extractor("tiny_random", torch.device("cpu"), resize=resize)
    _, cached = quality.reference_statistics(
        extractor, reference.batches(8), reference.identity, quality.default_cache_dir()
    )
    return cached


def test_reference_statistics_miss_on_renderer_libraries_preparation_and_image_bytes(tmp_path, monkeypatch):
    from diversity_cli.toy import data

    toy = toy_reference(["a red circle"], 4, 0, seed=3)
    assert _statistics(toy) is False and _statistics(toy) is True
    with monkeypatch.context() as patch:
        patch.setattr(data, "RENDERER_VERSION", data.RENDERER_VERSION + 1)
        assert _statistics(toy_reference(["a red circle"], 4, 0, seed=3)) is False  # toy scenes drawn anew
    assert _statistics(toy_reference(["a red circle"], 4, 0, seed=3)) is True
    assert _statistics(toy, resize="clean") is False  # another preparation convention
    with monkeypatch.context() as patch:
        patch.setattr(quality, "packages", lambda *names: {name: "0.0" for name in names})
        assert _statistics(toy) is False  # other Pillow / torch-fidelity / torchmetrics versions

    paths = _bmp_folder(tmp_path / "reference")
    assert _statistics(folder_reference(tmp_path / "reference")) is False
    assert _statistics(folder_reference(tmp_path / "reference")) is True
    _rewrite_keeping_stat(paths[1], seed=11)
    fingerprint._memo.clear()  # the next command
    assert _statistics(folder_reference(tmp_path / "reference")) is False


# --------------------------------------------------------------------------------------------- k=auto cache


def test_commitment_cache_misses_when_the_model_is_retrained_in_place(tiny_pairs, monkeypatch):
    from diversity_cli.sampling import autok

    pair = tiny_pairs("tiny_sd")
    cfg = compose("generate", ["model=tiny_sd", "k=auto"])
    calls = []

    def measure():
        calls.append(1)
        return {"committed_timestep": 500, "committed_fraction": 0.5, "committed_step": 1, "steps": 2}

    k, record = autok.resolve_k(pair, cfg, measure)
    assert len(calls) == 1 and Path(record["cache"]).is_file()
    assert autok.resolve_k(pair, cfg, measure)[0] == k and len(calls) == 1  # cached
    parameter = next(pair.base.network.parameters())
    saved = parameter.detach().clone()
    with torch.no_grad():
        parameter.add_(0.01)  # retrained in place: same config, same name, other weights
    try:
        autok.resolve_k(pair, cfg, measure)
        assert len(calls) == 2
    finally:
        with torch.no_grad():
            parameter.copy_(saved)
    assert autok.resolve_k(pair, cfg, measure)[0] == k and len(calls) == 2  # back to the cached weights
    with monkeypatch.context() as patch:
        patch.setattr(autok, "packages", lambda *names: {name: "0.0" for name in names})
        autok.resolve_k(pair, cfg, measure)
    assert len(calls) == 3  # another diffusers / torch
    autok.resolve_k(pair, cfg, measure, ["another judge"])
    assert len(calls) == 4  # the distances measured by a network with other weights


# ------------------------------------------------------------------------------------------- cache command


def test_cache_info_and_clear_touch_only_what_the_toolkit_wrote(cli, tmp_path):
    root = tmp_path / "cache"
    ours = [
        root / "embeddings" / ("0123456789abcdef.pt"),
        root / "fid" / ("toy-" + "a" * 20 + ".pt"),
        root / "fid" / ("toy-" + "a" * 20 + ".json"),
        root / "commitment" / ("toy-" + "b" * 16 + ".json"),
        root / "fingerprints" / "files.json",
    ]
    theirs = [root / "notes.txt", root / "fid" / "my_stats.npz", root / "embeddings" / "keep.pt"]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
    code, out, err = cli("cache", "info")
    assert code == 0, err
    assert str(root) in out and "fid" in out and "2 file(s)" in out
    code, out, err = cli("cache", "clear", "fid")
    assert code == 0 and "cleared fid: 2 file(s)" in out
    assert not ours[1].exists() and ours[0].exists()
    code, out, _ = cli("cache", "clear")
    assert code == 0
    assert not any(path.exists() for path in ours)
    assert all(path.exists() for path in theirs)  # a user's files in the cache root are never deleted
    code, _, err = cli("cache", "clear", "everything")
    assert code == 2 and "kinds: embeddings, fid, commitment, fingerprints" in err
    code, _, err = cli("cache", "clear", "embedding")  # a near miss is named, as everywhere else
    assert code == 2 and "no such kind; did you mean embeddings?" in err, err
    code, _, err = cli("cache", "clera")  # it said "cache needs an action", as if none was given
    said = "error: cache clera: no such action; did you mean clear? the actions: info | clear"
    assert code == 2 and err.strip() == said, err
    code, _, err = cli("cache", "info", "fdi")  # no kind to suggest: info takes none
    assert code == 2 and err.strip() == "error: cache info fdi: `cache info` takes no argument", err


def test_cache_clear_of_a_kind_linked_elsewhere_empties_it_and_keeps_the_link(cli, tmp_path):
    """fingerprints/ linked to scratch: its files went, then rmdir of the link failed with an `out=` hint."""
    root, scratch = tmp_path / "cache", tmp_path / "scratch"
    scratch.mkdir()
    root.mkdir()
    (root / "fingerprints").symlink_to(scratch, target_is_directory=True)
    (scratch / "files.json").write_text("{}")
    code, out, err = cli("cache", "clear", "fingerprints")
    assert code == 0 and "cleared fingerprints: 1 file(s)" in out, err
    assert (root / "fingerprints").is_symlink() and scratch.is_dir() and not (scratch / "files.json").exists()


def test_cache_clear_leaves_a_running_writers_temporary_and_files_not_named_as_ours(cli):
    """`cache clear fid` deleted every hidden .tmp file: the temporary a running fid was writing its statistics
    into (its rename then failed) and a user's `.draft.tmp`. Only a killed writer's temporaries go now."""
    from diversity_cli.core.atomic import HOST

    folder = cache_dir("fid")
    folder.mkdir(parents=True)
    ours = folder / "toy-0123456789abcdef0123.pt"
    live = folder / f".{ours.name}.{HOST}.{os.getpid()}.abc123.tmp.pt"  # this process: a writer still running
    dead = folder / f".{ours.name}.{HOST}.999999999.def456.tmp.pt"  # no such process: killed mid-write
    draft = folder / ".draft.tmp"
    for path in (ours, live, dead, draft):
        path.write_bytes(b"x")
    code, _, err = cli("cache", "clear", "fid")
    assert code == 0, err
    assert not ours.exists() and not dead.exists()
    assert live.exists() and draft.exists()


def test_a_cache_root_that_is_a_file_is_one_line_before_any_work(cli, tmp_path, monkeypatch):
    """A file as DIVERSITY_CLI_CACHE failed only when the first result was saved, after the embedding, blaming out=
    (`cache info` reported 0 files)."""
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    for root in (afile, afile / "sub"):
        monkeypatch.setenv("DIVERSITY_CLI_CACHE", str(root))
        for command in (("cache", "info"), ("diversity", f"out={tmp_path / 'run'}")):
            code, _, err = cli(*command)
            assert code == 2 and err.startswith(f"error: DIVERSITY_CLI_CACHE={root}: {afile} is a file"), err
    assert afile.read_text() == "mine\n" and not (tmp_path / "run").exists()
