"""qnet_client: the Python pipeline client of qnetd (submit, follow, download compression jobs).

    from qnet_client import QnetClient
    with QnetClient("127.0.0.1:50051") as qnet:
        job = qnet.submit(model="zoo:lenet5", dataset="fashion-mnist", weight_bits=2)
        job = qnet.wait(job.id, timeout=600)
        paths = qnet.download(job.id, "out/")
        pets = qnet.upload_dataset("photos/", "pets")  # train/<class>/*.jpg, test/<class>/*.jpg

The gRPC stubs are generated from proto/ (client/python/generate.sh, or CMake's qnet_python_stubs
target into the build tree); put their directory on PYTHONPATH, or let the package generate them
on first import with grpc_tools.
"""
from .client import JobFailed, QnetClient, QnetError, job_to_dict

__all__ = ["QnetClient", "QnetError", "JobFailed", "job_to_dict"]
