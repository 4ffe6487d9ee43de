"""Lists a gRPC server's services the way Python's grpcio-reflection does,
over reflection v1alpha, and resolves each one's descriptor through it.

Usage: python3 reflection_list.py HOST:PORT
Prints one line per service: its full name, then its methods.
"""

import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> None:
    target = sys.argv[1]
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = DescriptorPool(database)
        for name in database.get_services():
            service = pool.FindServiceByName(name)
            methods = " ".join(method.name for method in service.methods)
            print(f"{name} {methods}".rstrip())


if __name__ == "__main__":
    main()
