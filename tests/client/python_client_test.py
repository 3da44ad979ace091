#!/usr/bin/env python3
"""The Python pipeline client (client/python/qnet_client) against a real qnetd on loopback.

Environment: QNET_QNETD (the qnetd binary; the test skips with exit 77 without it) and optionally
QNET_WORKER_BINARY (qnet-worker: then one tiny job also runs to the end and its artifacts are
downloaded and digest-checked). PYTHONPATH must hold the generated stubs and client/python (ctest
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
import time

HERE = pathlib.Path(__file__).resolve().parent
SKIP = 77


def load_make_idx():
    spec = importlib.util.spec_from_file_location("make_idx", HERE.parent / "e2e" / "service_make_idx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_qnetd(qnetd, data_dir, dataset_dir, worker):
    log = open(data_dir / "qnetd.log", "w+")
    args = [qnetd, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
            "--data-dir", str(data_dir / "srv"), "--dataset", f"synth=idx:{dataset_dir}",
            "--local-workers", "1" if worker else "0"]
    if worker:
        args += ["--worker-binary", worker]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = (data_dir / "qnetd.log").read_text()
        m = re.search(r"listening grpc=(\S+) http=(\S+)", text)
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            raise SystemExit(f"qnetd exited: {text[-500:]}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("qnetd printed no listening line within 60 s")


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
        proc, address = start_qnetd(qnetd, tmp, tmp / "synth", worker)
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
            qnet.cancel(unset.id)

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
