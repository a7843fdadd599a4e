"""TeacherCache: lookups equal the live teacher, a killed build resumes to the same bytes, torn shards are redone,
mismatches are named, nothing is unpickled, and a 2-rank gloo build splits the shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pml_relaxed.datasets import SeededViewDataset
from pml_relaxed.models import CachedTeacher, TeacherCache
from tests.distributed.dist_harness import run_world
from tests.models import teacher_cache_build as fixture

ROOT = Path(__file__).resolve().parents[2]
NUM_SHARDS = -(-fixture.NUM_SAMPLES // fixture.BUILD["shard_size"])


def folder_bytes(folder: Path) -> dict:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def build(folder: Path, teacher=None, data=None) -> TeacherCache:
    return TeacherCache.build(teacher or fixture.SlowTeacher(), data or fixture.dataset(), folder, **fixture.BUILD)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reference")
    build(folder)
    return folder


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_lookup_equals_the_live_teacher_on_the_same_view(tmp_path, dtype):
    data = SeededViewDataset(fixture.dataset().dataset, fixture.augment, num_views=3, seed=1)
    teacher = fixture.SlowTeacher().double()
    cache = TeacherCache.build(
        teacher, data, tmp_path, views=3, batch_size=5, shard_size=7, dtype=dtype, progress=False
    )
    indices, views = torch.tensor([0, 6, 7, 7, 13, 29, 29, 29]), torch.tensor([0, 2, 1, 2, 0, 0, 1, 2])
    live = teacher(torch.stack([data.view(int(i), int(v)) for i, v in zip(indices, views)]).double()).detach()
    got = cache.lookup(indices, views)
    assert got.dtype == dtype and got.shape == (8, 3) and len(cache) == fixture.NUM_SAMPLES
    # float16 keeps 11 significant bits: within a relative 2**-11 of the float64 value
    tolerance = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 2.0**-11}[dtype]
    torch.testing.assert_close(got.double(), live, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(cache.lookup(indices), cache.lookup(indices, torch.zeros_like(indices)))
    assert not torch.equal(cache.lookup([7], [1]), cache.lookup([7], [2]))  # the views differ


def test_a_killed_build_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path, reference):
    folder = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, str(Path(fixture.__file__)), str(folder), "--slow", "0.05"], env=env, cwd=ROOT
    )
    deadline = time.monotonic() + 120
    while not (folder / "shard_00001.json").exists():
        assert process.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline, "no shard was written in 120 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (folder / "manifest.json").exists()
    assert len(list(folder.glob("shard_*.json"))) < NUM_SHARDS  # killed part way
    kept = {name: (folder / name).stat().st_mtime_ns for name in ("shard_00000.npy", "shard_00001.npy")}
    with pytest.raises(FileNotFoundError, match="a build that has not finished"):
        TeacherCache(folder)
    build(folder)
    assert folder_bytes(folder) == folder_bytes(reference)
    assert {name: (folder / name).stat().st_mtime_ns for name in kept} == kept  # the finished shards were kept


def test_a_torn_shard_is_detected_and_redone(tmp_path, reference):
    folder = tmp_path / "torn"
    build(folder)
    shard = folder / "shard_00002.npy"
    shard.write_bytes(shard.read_bytes()[:-20])  # truncated
    with pytest.raises(ValueError, match="shard_00002.npy .* torn"):
        TeacherCache(folder)
    other = folder / "shard_00003.npy"
    untouched = other.stat().st_mtime_ns
    build(folder)
    assert folder_bytes(folder) == folder_bytes(reference)
    assert other.stat().st_mtime_ns == untouched


def test_a_flipped_byte_is_caught_by_verify_and_redone(tmp_path, reference):
    folder = tmp_path / "flipped"
    build(folder)
    shard = folder / "shard_00004.npy"
    payload = bytearray(shard.read_bytes())
    payload[-1] ^= 0xFF
    shard.write_bytes(bytes(payload))
    TeacherCache(folder)  # the shape is intact: only the checksum sees it
    with pytest.raises(ValueError, match="shard_00004.npy: its SHA-256 differs"):
        TeacherCache(folder, verify=True)
    (folder / "shard_00005.json").unlink()  # as if killed between a shard's two renames
    (folder / "shard_00006.npy.tmp-123").write_bytes(b"partial")  # writes cut short
    (folder / "manifest.json.tmp-123").write_bytes(b"{")
    build(folder)
    assert folder_bytes(folder) == folder_bytes(reference)


def test_a_mismatch_names_what_differs(reference, tmp_path):
    other_teacher = fixture.SlowTeacher()
    with torch.no_grad():
        other_teacher.linear.bias.add_(1)
    with pytest.raises(ValueError, match=r"teacher differs \(sha256: expected '[0-9a-f]+', got '[0-9a-f]+'\)"):
        TeacherCache(reference, teacher=other_teacher)
    with pytest.raises(ValueError, match=r"teacher differs \(class: expected '.*SlowTeacher', got '.*Linear'"):
        TeacherCache(reference, teacher=torch.nn.Linear(fixture.IN_DIM, 3))
    data = fixture.dataset()
    cases = [
        (SeededViewDataset(data.dataset, fixture.augment, num_views=2, seed=6), r"seed: expected 5, got 6"),
        (SeededViewDataset(data.dataset, lambda x: x * 2, num_views=2, seed=5), r"transform: expected '[0-9a-f]+'"),
        (SeededViewDataset(torch.utils.data.TensorDataset(torch.zeros(4, 6))), r"size: expected 30, got 4"),
    ]
    for other, match in cases:
        with pytest.raises(ValueError, match=r"dataset differs \(.*" + match):
            TeacherCache(reference, dataset=other)
    TeacherCache(reference, teacher=fixture.SlowTeacher(), dataset=data, views=2)  # the same: no error
    with pytest.raises(ValueError, match=r"views: expected at most 2 \(the cache's\), got 3"):
        TeacherCache(reference, views=3)
    with pytest.raises(
        ValueError, match=r"holds another teacher cache build: the build differs \(views: expected 2, got 3"
    ):
        TeacherCache.build(fixture.SlowTeacher(), data, reference, views=3, shard_size=4, progress=False)
    with pytest.raises(ValueError, match="views must lie in \\[0, 2\\); got values in \\[0, 2\\]"):
        TeacherCache(reference).lookup([0, 1], [0, 2])
    with pytest.raises(ValueError, match="wrap the dataset in pml_relaxed.datasets.SeededViewDataset"):
        TeacherCache.build(fixture.SlowTeacher(), data.dataset, tmp_path, views=2)
    with pytest.raises(TypeError, match="dtype must be one of torch.float16"):
        TeacherCache.build(fixture.SlowTeacher(), data, tmp_path, dtype=torch.bfloat16)


class Planted:
    """A pickle whose loading writes ``marker``, as any pickle can run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('unpickled')",))


def test_opening_unpickles_nothing(reference, tmp_path):
    folder, marker = tmp_path / "planted", tmp_path / "marker"
    folder.mkdir()
    for name, payload in folder_bytes(reference).items():
        (folder / name).write_bytes(payload)
    planted = np.empty(1, dtype=object)
    planted[0] = Planted(marker)
    np.save(folder / "shard_00000.npy", planted, allow_pickle=True)
    with pytest.raises(ValueError, match="shard_00000.npy of .* is missing or torn"):
        TeacherCache(folder)
    assert not marker.exists()
    np.load(folder / "shard_00000.npy", allow_pickle=True)  # the positive control: unpickling it runs the code
    assert marker.read_text() == "unpickled"


def test_a_two_rank_gloo_build_splits_the_shards_and_reads_the_whole_cache(tmp_path, reference, monkeypatch):
    folder = tmp_path / "world"
    monkeypatch.setenv(fixture.WORLD_FOLDER_VARIABLE, str(folder))
    results = run_world("tests.models.teacher_cache_build", "build_on_rank", world_size=2)
    shard_size = fixture.BUILD["shard_size"]
    for rank, result in enumerate(results):
        mine = [i for i in range(fixture.NUM_SAMPLES) if (i // shard_size) % 2 == rank]
        assert result["samples"].tolist() == mine
        torch.testing.assert_close(result["lookup"], results[0]["lookup"], rtol=0, atol=0)
    assert folder_bytes(folder) == folder_bytes(reference)


def test_a_one_view_cache_becomes_a_cached_teacher(tmp_path):
    teacher = fixture.SlowTeacher()
    points = fixture.dataset().dataset
    cache = TeacherCache.build(teacher, points, tmp_path, shard_size=8, progress=False)  # a plain dataset: 1 view
    table = CachedTeacher(cache.lookup(torch.arange(len(cache))))
    rows = torch.tensor([[3], [17], [29]])
    torch.testing.assert_close(table(rows), teacher(points.tensors[0][[3, 17, 29]]).detach())


def test_a_teacher_with_its_own_content_fingerprint_is_keyed_by_it_and_a_text_teacher_is_cached(tmp_path):
    from pml_relaxed.models.teacher_cache import teacher_fingerprint

    class TextTeacher(torch.nn.Module):
        """Texts in, their lengths and word counts out; its output depends on ``scale``, not in its state_dict."""

        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def content_fingerprint(self):
            return {"class": "TextTeacher", "sha256": f"scale={self.scale}"}

        def forward(self, texts):
            return self.scale * torch.tensor([[len(t), len(t.split())] for t in texts], dtype=torch.float32)

    class Texts(torch.utils.data.Dataset):
        def __init__(self, texts):
            self.texts = texts

        def __len__(self):
            return len(self.texts)

        def view(self, index, view):
            return self.texts[index]

    texts = Texts(["lost card", "where is my card", "rate", "top up by transfer", "pin"])
    one, two = TextTeacher(1.0), TextTeacher(2.0)
    assert teacher_fingerprint(one) == {"class": "TextTeacher", "sha256": "scale=1.0"} != teacher_fingerprint(two)
    cache = TeacherCache.build(one, texts, tmp_path / "cache", batch_size=2, shard_size=3, progress=False)
    assert torch.equal(cache.lookup(torch.arange(5)), one(texts.texts))
    with pytest.raises(ValueError, match=r"teacher differs \(sha256: expected 'scale=1.0', got 'scale=2.0'\)"):
        TeacherCache(tmp_path / "cache", teacher=two)
