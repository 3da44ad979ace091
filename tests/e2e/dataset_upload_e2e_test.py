#!/usr/bin/env python3
"""Bring your own data, end to end with real processes on loopback (qnetd, its local worker, the
qnet CLI):

  upload     a PNG image folder uploaded with `qnet datasets upload DIR --name X --json` is listed
             with its digest, format, counts and classes; the same upload again is a no-op with
             the same record; a job on it succeeds; the record survives a qnetd restart. Refused
             at upload, with a message naming the problem and nothing registered: a .tar with a
             ".." entry, a folder with a corrupt image, an .npz that is not one, other content
             under a taken name, an operator's name.
  volume     `qnetd --dataset NAME=imagefolder:DIR` is read in place by the worker (no download);
             a path the worker cannot see fails the job at once (attempt 1, not retried), naming
             the path.

    dataset_upload_e2e_test.py SCENARIO --qnetd PATH --worker PATH --qnet PATH
"""
import hashlib
import importlib.util
import io
import json
import pathlib
import random
import shutil
import signal
import sys
import tarfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import service_e2e_test  # noqa: E402
from service_e2e_test import Env, check  # noqa: E402

JOB = ["--model", "zoo:lenet5", "--weight-bits", "2", "--activation-bits", "2",
       "--pretrain-epochs", "1", "--epochs", "1"]


def make_image_folder(root: pathlib.Path, classes=3, n_train=24, n_test=8, seed=1):
    """28x28 grey PNGs: class k has a bright bar at rows 6k+4..6k+7 over noise (learnable)."""
    from PIL import Image
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for k in range(classes):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = bytearray(rng.randrange(0, 60) for _ in range(28 * 28))
                for row in range(6 * k + 4, 6 * k + 8):
                    pixels[row * 28 + 4:row * 28 + 24] = bytes([220] * 20)
                Image.frombytes("L", (28, 28), bytes(pixels)).save(folder / f"{i:03d}.png")
    return root


def python_packed_digest(folder):
    """The digest of `folder` as the Python client packs it (client/python/qnet_client)."""
    path = HERE.parents[1] / "client/python/qnet_client/dataset_tar.py"
    spec = importlib.util.spec_from_file_location("dataset_tar", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    packed = io.BytesIO()
    module.write_dataset_tar(folder, packed)
    return "sha256:" + hashlib.sha256(packed.getvalue()).hexdigest()


def upload(env, path, name, *extra):
    return env.qnet("datasets", "upload", str(path), "--name", name, *extra, timeout=300)


def listed(env):
    return {d["name"]: d for d in env.qnet_json("datasets")["datasets"]}


def expect_refused(env, what, path, name, needle):
    rc, out, err = upload(env, path, name, "--json")
    check(rc == 2, f"{what}: upload exited {rc} (want 2): {err.strip()[-300:]}")
    check(needle in err, f"{what}: the message does not say {needle!r}: {err.strip()[-300:]}")
    check(name not in listed(env), f"{what}: registered anyway")


def scenario_upload(env: Env):
    folder = make_image_folder(env.tmp / "folder")
    env.start_qnetd("--local-workers", "1")
    rc, out, err = upload(env, folder, "small-folder", "--json")
    check(rc == 0, f"upload exited {rc}: {err.strip()[-500:]}")
    first = json.loads(out)
    check(first["origin"] == "uploaded" and first["digest"].startswith("sha256:"), first)
    check(first["format"] in ("archive", "imagefolder"), f"format {first['format']}")
    check(int(first["train_images"]) == 72 and int(first["test_images"]) == 24, first)
    check(first["class_names"] == ["class0", "class1", "class2"], first["class_names"])
    check([first["channels"], first["height"], first["width"]] == [1, 28, 28], first)
    check(python_packed_digest(folder) == first["digest"],
          "the Python client packs the folder into other bytes than the CLI")

    rc, out, err = upload(env, folder, "small-folder", "--json")
    check(rc == 0, f"repeated upload exited {rc}: {err.strip()[-500:]}")
    check(json.loads(out) == first, f"the repeat changed the record: {out}")
    check("already on the server" in err, f"the repeat sent the data again: {err}")
    check(listed(env)["small-folder"] == first, "qnet datasets --json shows another record")

    rc, out, err = env.qnet("submit", *JOB, "--dataset", "small-folder", "--wait", "--json",
                            timeout=600)
    check(rc == 0, f"job on the uploaded dataset exited {rc}: {err.strip()[-800:]}")
    job = json.loads(out)
    check(job["state"] == "SUCCEEDED", f"job {job['state']}: {job.get('error')}")

    # Refusals.
    evil = env.tmp / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        for name in ("train/a/0.png", "train/../../escape.png"):
            data = (folder / "train/class0/000.png").read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    expect_refused(env, "a '..' entry", evil, "evil", "..")
    corrupt = env.tmp / "corrupt"
    shutil.copytree(folder, corrupt)
    (corrupt / "train/class1/005.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a PNG")
    expect_refused(env, "a corrupt image", corrupt, "corrupt", "005.png")
    fake_npz = env.tmp / "fake.npz"
    fake_npz.write_text("x_train,y_train\n1,2\n")
    expect_refused(env, "an .npz that is not one", fake_npz, "fake", "no dataset format")
    other = make_image_folder(env.tmp / "other", classes=2, seed=2)
    rc, _, err = upload(env, other, "small-folder")
    check(rc == 2 and "--replace" in err, f"other content under a taken name: {rc} {err}")
    check(listed(env)["small-folder"]["digest"] == first["digest"], "the record changed")
    rc, _, err = upload(env, folder, "synth")
    check(rc == 2 and "operator" in err, f"an operator's name: {rc} {err}")

    # Durable: a restarted qnetd still has it.
    qnetd = env.procs[0]
    qnetd.send_signal(signal.SIGTERM)
    qnetd.wait(timeout=60)
    env.start_qnetd("--local-workers", "0")
    check(listed(env).get("small-folder") == first, "the upload did not survive a restart")
    print(f"upload: {first['digest']} registered, repeated as a no-op, job SUCCEEDED "
          f"(quantized_top1={job['metrics']['quantized_top1']:.3f}), refusals precise, "
          f"record kept over a restart")


def scenario_volume(env: Env):
    folder = make_image_folder(env.tmp / "volume/pets")
    env.start_qnetd("--local-workers", "1", "--dataset", f"pets=imagefolder:{folder}",
                    "--dataset", f"ghost=imagefolder:{env.tmp / 'not-mounted'}",
                    "--max-attempts", "3")
    sets = listed(env)
    check(sets["pets"]["origin"] == "operator" and int(sets["pets"]["train_images"]) == 72, sets)
    check("ghost" in sets, "a path qnetd cannot see is not registered")
    rc, out, err = env.qnet("submit", *JOB, "--dataset", "pets", "--wait", "--json", timeout=600)
    check(rc == 0, f"job on the volume dataset exited {rc}: {err.strip()[-800:]}")
    check(json.loads(out)["state"] == "SUCCEEDED", out)

    rc, out, err = env.qnet("submit", *JOB, "--dataset", "ghost", "--wait", "--json", timeout=300)
    job = json.loads(out)
    check(rc == 1 and job["state"] == "FAILED", f"ghost job: exit {rc}, {job['state']}")
    check(job["attempt"] == 1, f"ghost job retried: attempt {job['attempt']}")
    check(str(env.tmp / "not-mounted") in job["error"], f"error names no path: {job['error']}")
    print("volume: read in place; an unmounted path fails at once naming it")


SCENARIOS = {"upload": scenario_upload, "volume": scenario_volume}


if __name__ == "__main__":
    sys.exit(service_e2e_test.main(SCENARIOS, "qnet_byod"))
