import json
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from data_pipeline.build import KILL_AFTER_ENV, KILL_BEFORE_RENAME_ENV
from data_pipeline.shards import load_manifest, verify_manifest
from plumbing.errors import UserError

from conftest import assert_user_error, build_tiny, file_tree, run_cli, site_in_last_shard


def test_manifest_lists_every_site_once_with_checksums(shard_dir, synth_root):
    manifest = load_manifest(shard_dir / "manifest.json")
    verify_manifest(manifest)
    ids = []
    for record in manifest["shards"]:
        with h5py.File(shard_dir / record["file"], "r") as handle:
            assert handle["images"].dtype == np.uint8 and handle["images"].fletcher32
            assert handle["labels"].dtype == np.int32
            assert handle.attrs["image_mode"] == "rgb224" and handle.attrs["schema_version"] == 1
            ids += [f"{i.decode()}_s{s}" for i, s in zip(handle["id_codes"][:], handle["sites"][:])]
    assert len(ids) == len(set(ids)) == 2 * (12 - 3) * 3  # sites x treatment wells x experiments
    assert sum(manifest["splits"].values()) == len(ids)
    assert manifest["image_shape"] == [32, 32, 3]
    assert not list(shard_dir.glob("*.tmp-*"))


def test_parallel_build_equals_serial_build(synth_root, tmp_path):
    serial = build_tiny(synth_root, tmp_path / "serial", workers=1)
    parallel = build_tiny(synth_root, tmp_path / "parallel", workers=2)
    assert [(s["file"], s["sha256"]) for s in serial["shards"]] == \
           [(s["file"], s["sha256"]) for s in parallel["shards"]]


def _build_cmd(root, out, *extra):
    return ("data_pipeline", "build", "--root", str(root), "--out", str(out), "--size", "32",
            "--shard-size", "8", "--workers", "1", *extra)


def test_kill_after_a_shard_then_resume_skips_finished_shards(synth_root, tmp_path):
    out = tmp_path / "shards"
    killed = run_cli(*_build_cmd(synth_root, out), env={KILL_AFTER_ENV: "2"})
    assert killed.returncode == -9
    journal = json.loads((out / "manifest.json.partial").read_text())
    assert len(journal["jobs"]) == 2 and not (out / "manifest.json").exists()
    resumed = run_cli(*_build_cmd(synth_root, out))
    assert resumed.returncode == 0, resumed.stderr
    assert "(2 resumed)" in resumed.stdout
    assert run_cli(*_build_cmd(synth_root, tmp_path / "reference")).returncode == 0
    manifest = load_manifest(out / "manifest.json")
    reference = load_manifest(tmp_path / "reference" / "manifest.json")
    assert [s["sha256"] for s in manifest["shards"]] == [s["sha256"] for s in reference["shards"]]
    assert not (out / "manifest.json.partial").exists()


def test_kill_while_writing_leaves_no_half_shard_under_a_final_name(synth_root, tmp_path):
    out = tmp_path / "shards"
    killed = run_cli(*_build_cmd(synth_root, out), env={KILL_BEFORE_RENAME_ENV: "1"})
    assert killed.returncode == -9
    assert list(out.glob("*.h5.tmp-*")) and not list(out.glob("*.h5"))
    resumed = run_cli(*_build_cmd(synth_root, out))
    assert resumed.returncode == 0, resumed.stderr
    assert not list(out.glob("*.tmp-*"))
    verify_manifest(load_manifest(out / "manifest.json"))


@pytest.fixture
def damaged_root(synth_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(synth_root, root)
    first = pd.read_csv(root / "train.csv").iloc[0]
    victim = root / "train" / first.experiment / f"Plate{first.plate}" / f"{first.well}_s1_w3.png"
    victim.write_bytes(victim.read_bytes()[:60])
    return root, victim


def test_corrupt_png_fails_the_build_naming_the_file(damaged_root, tmp_path):
    root, victim = damaged_root
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text('{"kept": true}')
    result = run_cli(*_build_cmd(root, out))
    assert_user_error(result, victim.name)
    assert (out / "manifest.json").read_text() == '{"kept": true}'


def test_skip_bad_records_the_site_in_the_manifest(damaged_root, tmp_path):
    root, victim = damaged_root
    result = run_cli(*_build_cmd(root, tmp_path / "out", "--skip-bad"))
    assert result.returncode == 0, result.stderr
    manifest = load_manifest(tmp_path / "out" / "manifest.json")
    assert len(manifest["skipped"]) == 1 and victim.name in manifest["skipped"][0]["reason"]
    assert sum(manifest["splits"].values()) == 2 * (12 - 3) * 2 - 1


def test_tampered_shard_is_caught_by_inspect(shard_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(shard_dir, copy)
    manifest = load_manifest(copy / "manifest.json")
    victim = copy / manifest["shards"][0]["file"]
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = run_cli("data_pipeline", "inspect", str(copy / "manifest.json"))
    assert "SHA-256" in assert_user_error(result, victim.name)


def test_count_mismatch_and_missing_manifest_are_reported(shard_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(shard_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["shards"][0]["count"] += 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="manifest says"):
        verify_manifest(load_manifest(copy / "manifest.json"), check_sha=False)
    result = run_cli("data_pipeline", "inspect", str(tmp_path / "nowhere" / "manifest.json"))
    assert_user_error(result, "manifest not found")


def test_inspect_prints_counts_per_split_and_class(shard_dir):
    result = run_cli("data_pipeline", "inspect", str(shard_dir / "manifest.json"), "--json")
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    manifest = load_manifest(shard_dir / "manifest.json")
    assert {k: sum(v.values()) for k, v in counts.items()} == manifest["splits"]
    names = manifest["class_names"] + ["(unlabelled)"]
    read: dict[str, dict[str, int]] = {}
    for record in manifest["shards"]:  # the labels themselves, counted here
        with h5py.File(shard_dir / record["file"], "r") as handle:
            for label in handle["labels"][:]:
                per_class = read.setdefault(record["split"], {})
                per_class[names[label]] = per_class.get(names[label], 0) + 1
    assert counts == read and len(read["train"]) > 1


def test_inspect_no_sha_skips_the_sha_but_not_fletcher32(shard_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(shard_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = "0" * 64  # the manifest disagrees with an intact file
    (copy / "manifest.json").write_text(json.dumps(manifest))
    victim = copy / manifest["shards"][0]["file"]
    assert_user_error(run_cli("data_pipeline", "inspect", str(copy / "manifest.json")), f"{victim.name}: SHA-256")
    skipped = run_cli("data_pipeline", "inspect", str(copy / "manifest.json"), "--no-sha")
    assert skipped.returncode == 0 and "shards verified" in skipped.stdout, skipped.stderr
    with h5py.File(victim, "r") as handle:  # a byte inside the first image chunk
        offset = handle["images"].id.get_chunk_info(0).byte_offset + 100
    data = bytearray(victim.read_bytes())
    data[offset] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert_user_error(run_cli("data_pipeline", "inspect", str(copy / "manifest.json"), "--no-sha"), victim.name)


def test_failed_rebuild_leaves_the_previous_build_intact(synth_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(synth_root, root)
    victim = site_in_last_shard(root)
    victim.write_bytes(victim.read_bytes()[:60])
    out = tmp_path / "shards"
    assert run_cli(*_build_cmd(synth_root, out)).returncode == 0
    before = file_tree(out)
    failed = run_cli(*_build_cmd(root, out))  # another root: another plan, one PNG corrupt
    assert_user_error(failed, victim.name)
    journal = json.loads((out / "manifest.json.partial").read_text())
    assert journal["jobs"], "the failing build wrote no shard before the bad PNG: the test tests nothing"
    after = {name: data for name, data in file_tree(out).items() if name != "manifest.json.partial"}
    assert after.keys() >= before.keys()
    assert all(after[name] == data for name, data in before.items())
    inspected = run_cli("data_pipeline", "inspect", str(out / "manifest.json"))
    assert inspected.returncode == 0, inspected.stderr


def test_successful_rebuild_replaces_the_previous_shards(synth_root, tmp_path):
    out = tmp_path / "shards"
    first = build_tiny(synth_root, out)
    second = build_tiny(synth_root, out, shard_size=5)  # another plan
    assert {r["file"] for r in first["shards"]}.isdisjoint(r["file"] for r in second["shards"])
    assert sorted(p.name for p in out.glob("*.h5")) == sorted(r["file"] for r in second["shards"])
    verify_manifest(load_manifest(out / "manifest.json"))
