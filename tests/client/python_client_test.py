#!/usr/bin/env python3
"""The Python pipeline client (client/python/qnet_client) against a real qnetd on loopback.

Environment: QNET_QNETD (the qnetd binary; the test skips with exit 77 without it) and optionally
QNET_WORKER_BINARY (qnet-worker: then one tiny job also runs to the end and its artifacts are
downloaded and digest-checked). Datasets: an image folder uploaded and listed, a repeat that is a
no-op, refusals, and an upload cut mid-way that resumes (qnetd's byte counter shows only the rest
was sent). PYTHONPATH must hold the generated stubs and client/python (ctest
sets both). No pytest: plain asserts, exit 0 on success.
"""
import hashlib
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
SKIP = 77


def load_make_idx():
    spec = importlib.util.spec_from_file_location("make_idx", HERE.parent / "e2e" / "service_make_idx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_e2e(name):
    sys.path.insert(0, str(HERE.parent / "e2e"))
    spec = importlib.util.spec_from_file_location(name, HERE.parent / "e2e" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def uploaded_bytes(http):
    """qnetd's count of blob bytes received."""
    import urllib.request
    text = urllib.request.urlopen(f"http://{http}/metrics", timeout=10).read().decode()
    return float(re.search(r'qnet_blob_bytes_total\{direction="upload"\} (\S+)', text).group(1))


def check_datasets(qnet, tmp, http):
    """upload_dataset / list_datasets, and an interrupted upload that resumes."""
    import grpc
    from qnet_client import QnetError
    from qnet_client.client import blob_pb2
    folder = load_e2e("dataset_upload_e2e_test").make_image_folder(tmp / "folder")
    record = qnet.upload_dataset(folder, "py-folder")
    assert record.origin == "uploaded" and record.digest.startswith("sha256:"), record
    assert list(record.class_names) == ["class0", "class1", "class2"], record
    assert record.train_images == 72 and record.test_images == 24, record
    assert qnet.upload_dataset(folder, "py-folder") == record  # a no-op
    assert record in qnet.list_datasets()
    try:
        qnet.upload_dataset(tmp / "nothing-here", "py-missing")
        raise AssertionError("a missing path was accepted")
    except QnetError as e:
        assert e.code == grpc.StatusCode.NOT_FOUND, e
    bad = tmp / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 but not a zip")
    try:
        qnet.upload_dataset(bad, "py-bad")
        raise AssertionError("a broken .npz was accepted")
    except QnetError as e:
        assert e.code == grpc.StatusCode.INVALID_ARGUMENT and "bad.npz" not in e.message, e
    assert "py-bad" not in [d.name for d in qnet.list_datasets()]

    # An upload cut after two chunks continues from there.
    data = os.urandom(5 << 20)
    blob = tmp / "cut.bin"
    blob.write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    sent = threading.Event()

    def cut():
        yield blob_pb2.UploadRequest(header=blob_pb2.UploadHeader(
            size_bytes=len(data), digest=digest, kind="dataset"))
        yield blob_pb2.UploadRequest(chunk=data[:1 << 20])
        yield blob_pb2.UploadRequest(chunk=data[1 << 20:2 << 20])
        sent.wait(30)
        raise ConnectionAbortedError("cut")

    call = qnet._blobs.Upload.future(cut())
    deadline = time.monotonic() + 30
    while qnet.upload_offset(digest) < 2 << 20:
        assert time.monotonic() < deadline, "the server kept no bytes of the cut upload"
        time.sleep(0.05)
    sent.set()
    try:
        call.result(timeout=30)
        raise AssertionError("the cut upload succeeded")
    except grpc.RpcError:
        pass
    before = uploaded_bytes(http)
    assert qnet.upload(blob, "dataset") == digest
    assert uploaded_bytes(http) - before == len(data) - (2 << 20), "the upload started over"
    print(f"datasets: {record.digest} uploaded, repeated, listed; a cut upload resumed")


def start_qnetd(qnetd, data_dir, dataset_dir, worker, *extra, name="srv"):
    log_path = data_dir / f"{name}.log"
    log = open(log_path, "w+")
    args = [qnetd, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
            "--data-dir", str(data_dir / name), "--dataset", f"synth=idx:{dataset_dir}",
            "--local-workers", "1" if worker else "0", *extra]
    if worker:
        args += ["--worker-binary", worker]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log_path.read_text()
        m = re.search(r"listening grpc=(\S+) http=(\S+)", text)
        if m:
            return proc, m.group(1), m.group(2)
        if proc.poll() is not None:
            raise SystemExit(f"qnetd exited: {text[-500:]}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("qnetd printed no listening line within 60 s")


def check_tokens(qnetd, tmp, QnetClient, QnetError, grpc):
    """token= (and $QNET_TOKEN) identify the client to a qnetd with --auth-tokens."""
    identities = {}
    for name in ("alice", "bob"):
        out = subprocess.run([qnetd, "token", "--name", name, "--role", "client"],
                             capture_output=True, text=True, check=True).stdout.splitlines()
        identities[name] = out
    (tmp / "tokens").write_text("".join(line + "\n" for _, line in identities.values()))
    proc, address, _ = start_qnetd(qnetd, tmp, tmp / "synth", "", "--auth-tokens",
                                   str(tmp / "tokens"), name="auth")
    try:
        with QnetClient(address, timeout=10, token=identities["alice"][0]) as alice:
            job = alice.submit("zoo:lenet5", "synth", 2)
            assert job.owner == "alice", job
            assert [j.id for j in alice.list()] == [job.id]
        with QnetClient(address, timeout=10, token=identities["bob"][0]) as bob:
            assert bob.list() == []
            try:
                bob.get(job.id)
                raise AssertionError("bob read alice's job")
            except QnetError as e:
                assert e.code == grpc.StatusCode.NOT_FOUND, e
        with QnetClient(address, timeout=10, token="") as nobody:
            try:
                nobody.list()
                raise AssertionError("a client without a token listed jobs")
            except QnetError as e:
                assert e.code == grpc.StatusCode.UNAUTHENTICATED and "QNET_TOKEN" in e.message, e
        print("tokens: alice sees her job, bob does not, no token is refused")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> int:
    qnetd = os.environ.get("QNET_QNETD", "")
    if not qnetd or not os.access(qnetd, os.X_OK):
        print("SKIP: no qnetd binary (QNET_QNETD)")
        return SKIP
    worker = os.environ.get("QNET_WORKER_BINARY", "")
    if worker and not os.access(worker, os.X_OK):
        worker = ""
    import grpc
    from qnet_client import JobFailed, QnetClient, QnetError, job_to_dict
    from qnet_client.client import job_pb2

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="qnet_py_client_"))
    proc = None
    try:
        load_make_idx().main(["make_idx", str(tmp / "synth"), "256", "128"])
        proc, address, http = start_qnetd(qnetd, tmp, tmp / "synth", worker)
        with QnetClient(address, timeout=10) as qnet:
            assert "synth" in [d.name for d in qnet.datasets()], qnet.datasets()
            assert any(m.name == "zoo:lenet5" for m in qnet.models())
            # what the server accepts comes from it, not from lists in the client
            caps = qnet.capabilities()
            assert [f.name for f in caps.export_formats] == [
                "torchscript", "onnx", "packed", "metrics"], caps
            assert "idx" in caps.dataset_formats and caps.weight_bits.max == 8, caps

            # submit / get / list / idempotency
            settings = dict(activation_bits=2, pretrain_epochs=1, epochs=1, distill_weight=0.0,
                            max_train_samples=256, max_test_samples=128,
                            input_mean=[0.5], input_std=[0.25])
            job = qnet.submit("zoo:lenet5", "synth", 2, request_id="py-1", **settings)
            assert job.id and job.state in (job_pb2.QUEUED, job_pb2.RUNNING), job
            assert qnet.get(job.id).id == job.id
            assert qnet.submit("zoo:lenet5", "synth", 2, request_id="py-1", **settings).id == job.id
            assert job.id in [j.id for j in qnet.list()]
            d = job_to_dict(qnet.get(job.id))
            assert d["spec"]["weight_bits"] == 2 and "attempt" in d, d
            # 0 is sent as a setting, not dropped as "unset"
            assert qnet.get(job.id).spec.training.HasField("distill_weight"), d
            unset = qnet.submit("zoo:lenet5", "synth", 2, **settings | dict(distill_weight=None))
            assert not unset.spec.training.HasField("distill_weight"), unset
            if qnet.cancel(unset.id).state == job_pb2.CANCELLED:  # ended: it may be deleted
                qnet.delete(unset.id)
                try:
                    qnet.get(unset.id)
                    raise AssertionError("a deleted job is still there")
                except QnetError as e:
                    assert e.code == grpc.StatusCode.NOT_FOUND, e

            # bad input is refused with a message, and the server keeps answering
            for bad in (dict(dataset="no-such-data", weight_bits=2),
                        dict(dataset="synth", weight_bits=33),
                        dict(dataset="synth", weight_bits=2, distill_weight=1.5),
                        dict(dataset="synth", weight_bits=2, input_mean=[0.5]),
                        dict(dataset="synth", weight_bits=2, input_mean=[0.5] * 3,
                             input_std=[0.2] * 3)):
                try:
                    qnet.submit("zoo:lenet5", **bad)
                    raise AssertionError(f"accepted {bad}")
                except QnetError as e:
                    assert e.code == grpc.StatusCode.INVALID_ARGUMENT and e.message, e
            try:
                qnet.submit(str(tmp / "missing.pt"), "synth", 2)
                raise AssertionError("a missing model file was accepted")
            except QnetError as e:
                assert "does not exist" in e.message

            # uploads are content-addressed
            blob = tmp / "blob.bin"
            blob.write_bytes(os.urandom(3 << 20))
            digest = qnet.upload(blob, "dataset")
            assert digest == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
            assert qnet.upload(blob, "dataset") == digest
            qnet.download_blob(digest, tmp / "blob.copy")
            assert (tmp / "blob.copy").read_bytes() == blob.read_bytes()
            check_datasets(qnet, tmp, http)

            if worker:
                done = qnet.wait(job.id, timeout=600)
                assert done.state == job_pb2.SUCCEEDED, (done.state, done.error)
                paths = qnet.download(job.id, tmp / "art")
                digests = {"sha256:" + hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
                assert {a.digest for a in done.artifacts} == digests
                # the job trained with the normalization it was given, and says so
                norm = done.metrics.input_normalization
                assert (list(norm.mean), list(norm.std)) == ([0.5], [0.25]), norm
                import torch
                model = torch.jit.load(str(next(p for p in paths if p.suffix == ".pt")))
                assert (model.qnet_input_mean, model.qnet_input_std) == ([0.5], [0.25])
                # "packed" brings its manifest, as the server's capabilities say
                packed = qnet.download(job.id, tmp / "packed", kind="packed")
                assert sorted(p.suffix for p in packed) == [".json", ".qnet"], packed
                # the metrics record the settings as run, defaults resolved
                assert done.metrics.effective_spec.training.seed == 1, done.metrics.effective_spec
                assert done.metrics.effective_spec.training.batch_size == 128
                print(f"job {job.id} SUCCEEDED, quantized_top1={done.metrics.quantized_top1:.3f}")
            else:
                cancelled = qnet.cancel(job.id)
                assert cancelled.state == job_pb2.CANCELLED or cancelled.cancel_requested
                try:
                    qnet.wait(job.id, timeout=30, raise_on_failure=True)
                    raise AssertionError("wait on a cancelled job did not raise")
                except JobFailed as e:
                    assert e.job.state == job_pb2.CANCELLED
        assert proc.poll() is None, "qnetd died"
        check_tokens(qnetd, tmp, QnetClient, QnetError, grpc)
        print("python client OK")
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
