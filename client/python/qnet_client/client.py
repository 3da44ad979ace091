"""QnetClient: submit, follow, list, cancel and download qnet jobs over gRPC; upload datasets."""
import collections
import hashlib
import os
import pathlib
import re
import tempfile
import time
from typing import Callable, Iterable, List, Optional

import grpc
from google.protobuf import json_format

from ._stubs import blob_pb2, blob_pb2_grpc, job_pb2, job_pb2_grpc
from .dataset_tar import write_dataset_tar

CHUNK = 1 << 20  # the server accepts upload chunks of at most 1 MiB
TERMINAL = (job_pb2.SUCCEEDED, job_pb2.FAILED, job_pb2.CANCELLED)
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class QnetError(Exception):
    """A failed call: `code` is the grpc.StatusCode, the message is the server's."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class JobFailed(QnetError):
    """wait(raise_on_failure=True) on a job that ended FAILED or CANCELLED."""

    def __init__(self, job):
        super().__init__(grpc.StatusCode.ABORTED,
                         f"job {job.id} {job_pb2.JobState.Name(job.state)}: {job.error}")
        self.job = job


def job_to_dict(job) -> dict:
    """The job as the CLI's --json prints it: proto field names, zeros included."""
    try:  # protobuf >= 5.26 renamed the option
        return json_format.MessageToDict(job, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
    except TypeError:
        return json_format.MessageToDict(job, preserving_proto_field_name=True,
                                         including_default_value_fields=True)


def _sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _safe_name(artifact) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(artifact.filename or ""))
    if not name.strip("."):
        name = f"{artifact.kind or 'artifact'}-{artifact.digest.split(':')[-1][:12]}"
    return name


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")), grpc.ClientCallDetails):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                   grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Sends "authorization: Bearer TOKEN" with every call, over TLS or plaintext alike."""

    def __init__(self, token: str):
        self._header = ("authorization", "Bearer " + token)

    def _details(self, d):
        return _CallDetails(d.method, d.timeout, list(d.metadata or []) + [self._header],
                            d.credentials, getattr(d, "wait_for_ready", None),
                            getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


def _read(path, variable: str) -> Optional[bytes]:
    path = path or os.environ.get(variable)
    return pathlib.Path(path).read_bytes() if path else None


class QnetClient:
    """A connection to qnetd. `token` (default $QNET_TOKEN) is the identity's token; `ca_cert`
    (the CA that signed qnetd's certificate), `cert` and `key` (mTLS) are PEM file paths, default
    $QNET_CA_CERT, $QNET_CERT, $QNET_KEY; TLS is used when any of them is set."""

    def __init__(self, address: Optional[str] = None, timeout: float = 30.0,
                 token: Optional[str] = None, ca_cert=None, cert=None, key=None):
        self.address = address or os.environ.get("QNET_SERVER", "127.0.0.1:50051")
        self.timeout = timeout
        options = [("grpc.max_receive_message_length", 16 << 20)]
        roots, chain, private = (_read(ca_cert, "QNET_CA_CERT"), _read(cert, "QNET_CERT"),
                                 _read(key, "QNET_KEY"))
        if roots or chain or private:
            credentials = grpc.ssl_channel_credentials(roots, private, chain)
            self._channel = grpc.secure_channel(self.address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(self.address, options=options)
        token = (token or os.environ.get("QNET_TOKEN", "")).strip()
        if token:
            self._channel = grpc.intercept_channel(self._channel, _BearerToken(token))
        self._jobs = job_pb2_grpc.JobServiceStub(self._channel)
        self._blobs = blob_pb2_grpc.BlobServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request, timeout=None):
        try:
            return method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise QnetError(e.code(), e.details() or str(e)) from None

    # --- jobs ---
    def submit(self, model: str, dataset: str, weight_bits: Optional[int] = None, *,
               activation_bits: int = 0, weight_levels: Iterable[float] = (),
               epochs: Optional[int] = None, pretrain_epochs: int = 0, batch_size: int = 0,
               learning_rate: float = 0.0, max_train_samples: int = 0, max_test_samples: int = 0,
               seed: Optional[int] = None, temperature_slope: float = 0.0,
               distill_weight: Optional[float] = None, quantize_first_last: bool = False,
               learn_thresholds: bool = False, export_formats: Iterable[str] = (),
               input_mean: Iterable[float] = (), input_std: Iterable[float] = (),
               priority: int = 0, request_id: str = ""):
        """Submits a job. `model` is zoo:NAME, sha256:<hex>, or a local TorchScript file (uploaded
        first). Zero settings take the server's defaults; so do `weight_bits`, `epochs`, `seed`
        and `distill_weight` left at None, since 0 is a value there (no QN epochs, seed 0, train on
        the labels alone). `input_mean`/`input_std` (one value per
        image channel, pixels scaled to [0, 1]) are the normalization the model was trained
        with; left empty, the dataset's training statistics are used. Returns the Job message."""
        if not model.startswith(("zoo:", "sha256:")):
            if not os.path.isfile(model):
                raise QnetError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"model file '{model}' does not exist")
            model = self.upload(model, "model")
        training = job_pb2.TrainingSettings(
            pretrain_epochs=pretrain_epochs, batch_size=batch_size,
            learning_rate=learning_rate, max_train_samples=max_train_samples,
            max_test_samples=max_test_samples, temperature_slope=temperature_slope,
            quantize_first_last=quantize_first_last, learn_thresholds=learn_thresholds)
        for name, value in (("epochs", epochs), ("seed", seed), ("distill_weight", distill_weight)):
            if value is not None:
                setattr(training, name, value)
        spec = job_pb2.JobSpec(
            model=model, dataset=dataset, activation_bits=activation_bits, weight_levels=list(weight_levels),
            export_formats=list(export_formats), priority=priority, training=training)
        if weight_bits is not None:
            spec.weight_bits = weight_bits
        mean, std = list(input_mean), list(input_std)
        if mean or std:
            spec.input_normalization.mean.extend(mean)
            spec.input_normalization.std.extend(std)
        return self._call(self._jobs.SubmitJob,
                          job_pb2.SubmitJobRequest(spec=spec, request_id=request_id))

    def get(self, job_id: str):
        return self._call(self._jobs.GetJob, job_pb2.GetJobRequest(id=job_id))

    def list(self, state: Optional[str] = None) -> List:
        """Every job (optionally in `state`, e.g. "RUNNING"), following page tokens."""
        filt = job_pb2.JobState.Value(state.upper()) if state else job_pb2.JOB_STATE_UNSPECIFIED
        jobs, token = [], ""
        while True:
            page = self._call(self._jobs.ListJobs, job_pb2.ListJobsRequest(
                state=filt, page_size=100, page_token=token))
            jobs.extend(page.jobs)
            if not page.next_page_token or page.next_page_token == token:
                return jobs
            token = page.next_page_token

    def cancel(self, job_id: str):
        return self._call(self._jobs.CancelJob, job_pb2.CancelJobRequest(id=job_id))

    def delete(self, job_id: str) -> None:
        """Deletes a finished job and its artifacts; a queued or running one is refused
        (FAILED_PRECONDITION): cancel it first."""
        self._call(self._jobs.DeleteJob, job_pb2.DeleteJobRequest(id=job_id))

    def datasets(self):
        return list(self._call(self._jobs.ListDatasets, job_pb2.ListDatasetsRequest()).datasets)

    def list_datasets(self) -> List:
        """Every dataset this identity's jobs can name, the operator's and its own uploads
        (qnet.v1.Dataset: name, origin, owner, format, typical shape, classes, image counts,
        digest of an upload)."""
        return self.datasets()

    def upload_dataset(self, path, name: str, replace: bool = False,
                       check_timeout: float = 1800.0):
        """Uploads a dataset and registers it as `name`; returns its qnet.v1.Dataset record.
        `path` is an image folder (train/<class>/*, optional test/<class>/*; packed into a .tar
        byte for byte as the CLI packs it, so both give one digest) or a .tar, .tar.gz, .zip or
        .npz file. The server checks the whole dataset before it answers (QnetError
        INVALID_ARGUMENT naming the bad entry). The same content under the same name again
        returns the existing record; other content needs `replace=True`."""
        path = pathlib.Path(path)
        if path.is_dir():
            with tempfile.TemporaryDirectory(prefix="qnet-dataset-") as tmp:
                packed = pathlib.Path(tmp) / "dataset.tar"
                try:
                    with open(packed, "wb") as out:
                        write_dataset_tar(path, out)
                except ValueError as e:
                    raise QnetError(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"packing {path}: {e}") from None
                digest = self.upload(packed, "dataset")
        elif path.is_file():
            digest = self.upload(path, "dataset")
        else:
            raise QnetError(grpc.StatusCode.NOT_FOUND,
                            f"{path} is neither a folder nor a file; give an image folder, a "
                            ".tar, .tar.gz or .zip of one, or an .npz")
        return self._call(self._jobs.CreateDataset,
                          job_pb2.CreateDatasetRequest(name=name, digest=digest, replace=replace),
                          timeout=check_timeout)

    def models(self):
        return list(self._call(self._jobs.ListModels, job_pb2.ListModelsRequest()).models)

    def capabilities(self):
        """What the server accepts: export formats (with the artifact kinds each produces),
        dataset formats, model sources and bit ranges (a qnet.v1.Capabilities)."""
        return self._call(self._jobs.GetCapabilities, job_pb2.GetCapabilitiesRequest())

    def wait(self, job_id: str, timeout: Optional[float] = None,
             on_progress: Optional[Callable] = None, raise_on_failure: bool = False):
        """Follows the job (WatchJob, re-opened if the stream breaks) until it is terminal and
        returns it. TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = 0.25
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"job {job_id} not finished after {timeout} s")
            last = None
            try:
                for job in self._jobs.WatchJob(job_pb2.WatchJobRequest(id=job_id),
                                               timeout=remaining):
                    last = job
                    backoff = 0.25
                    if on_progress:
                        on_progress(job)
                    if job.state in TERMINAL:
                        break
            except grpc.RpcError as e:
                if e.code() not in _TRANSIENT:
                    raise QnetError(e.code(), e.details() or str(e)) from None
            if last is not None and last.state in TERMINAL:
                job = self.get(job_id)  # the stored record carries metrics and artifacts
                if raise_on_failure and job.state != job_pb2.SUCCEEDED:
                    raise JobFailed(job)
                return job
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    # --- blobs ---
    def upload(self, path, kind: str = "model", retries: int = 3) -> str:
        """Uploads a file as a blob (skipped when the server has it); returns its digest. An
        upload the server holds part of (an earlier one that broke off) continues where it
        stopped, and a stream that breaks is resumed up to `retries` times."""
        digest = _sha256_file(path)
        size = os.path.getsize(path)
        try:
            if self._blobs.StatBlob(blob_pb2.StatBlobRequest(digest=digest),
                                    timeout=self.timeout).size_bytes == size:
                return digest
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED):
                raise QnetError(e.code(), e.details() or str(e)) from None

        def requests(offset):
            yield blob_pb2.UploadRequest(header=blob_pb2.UploadHeader(
                size_bytes=size, digest=digest, kind=kind, offset=offset))
            with open(path, "rb") as f:
                f.seek(offset)
                for block in iter(lambda: f.read(CHUNK), b""):
                    yield blob_pb2.UploadRequest(chunk=block)

        for attempt in range(retries + 1):
            offset = self.upload_offset(digest) if size > 0 else 0
            offset = offset if offset <= size else 0
            try:
                response = self._blobs.Upload(requests(offset))
                break
            except grpc.RpcError as e:
                # Resume after a broken stream, or while another upload of it ends; from the
                # start when the server's partial bytes did not match after all.
                again = e.code() in _TRANSIENT + (grpc.StatusCode.ABORTED,
                                                  grpc.StatusCode.OUT_OF_RANGE) or (
                    offset > 0 and e.code() == grpc.StatusCode.INVALID_ARGUMENT)
                if not again or attempt == retries:
                    raise QnetError(e.code(), e.details() or str(e)) from None
                time.sleep(0.2 * 2 ** attempt)
        if response.digest != digest:
            raise QnetError(grpc.StatusCode.DATA_LOSS,
                            f"server stored {path} as {response.digest}, expected {digest}")
        return digest

    def upload_offset(self, digest: str) -> int:
        """Bytes of an interrupted upload of `digest` the server holds (0: none)."""
        try:
            return self._blobs.GetUploadOffset(blob_pb2.GetUploadOffsetRequest(digest=digest),
                                               timeout=self.timeout).offset
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:  # an older server
                return 0
            raise QnetError(e.code(), e.details() or str(e)) from None

    def download_blob(self, digest: str, path) -> int:
        """Downloads a blob to `path` (via path.part, resuming), verifying the digest."""
        path = pathlib.Path(path)
        part = path.with_name(path.name + ".part")
        for attempt in range(4):
            offset = part.stat().st_size if part.exists() else 0
            try:
                with open(part, "ab") as f:
                    for chunk in self._blobs.Download(
                            blob_pb2.DownloadRequest(digest=digest, offset=offset)):
                        if chunk.offset != offset:
                            raise QnetError(grpc.StatusCode.INTERNAL,
                                            f"server sent offset {chunk.offset}, expected {offset}")
                        f.write(chunk.data)
                        offset += len(chunk.data)
                break
            except grpc.RpcError as e:
                if e.code() not in _TRANSIENT or attempt == 3:
                    raise QnetError(e.code(), e.details() or str(e)) from None
                time.sleep(0.2 * 2 ** attempt)
        if _sha256_file(part) != digest:
            part.unlink()
            raise QnetError(grpc.StatusCode.DATA_LOSS, f"content of {digest} did not match it")
        part.replace(path)
        return path.stat().st_size

    def download(self, job_id: str, out_dir, kind: Optional[str] = None) -> List[pathlib.Path]:
        """Downloads the job's artifacts into out_dir and returns the paths: all of them, or those
        of `kind`, an export format (every artifact kind it produces, as the server's
        capabilities say: "packed" brings its manifest) or an artifact kind."""
        job = self.get(job_id)
        kinds = {kind}
        if kind is not None:
            kinds.update(k for f in self.capabilities().export_formats if f.name == kind
                         for k in f.artifact_kinds)
        artifacts = [a for a in job.artifacts if kind is None or a.kind in kinds]
        if not artifacts:
            raise QnetError(grpc.StatusCode.FAILED_PRECONDITION,
                            f"job {job_id} ({job_pb2.JobState.Name(job.state)}) has no "
                            f"{kind + ' ' if kind else ''}artifacts")
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths, used = [], set()
        for a in artifacts:
            name, n = _safe_name(a), 2
            stem, dot, ext = name.rpartition(".")
            while name in used:
                name = f"{stem}-{n}.{ext}" if dot and stem else f"{_safe_name(a)}-{n}"
                n += 1
            used.add(name)
            self.download_blob(a.digest, out / name)
            paths.append(out / name)
        return paths
