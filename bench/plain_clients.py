"""The plain-client baseline for bench/backends.sh: PUT then GET N objects with
boto3 (S3) or azure-storage-blob (Azure) from a thread pool of CONCURRENCY.
Usage: plain_clients.py s3|azure CONCURRENCY OBJECTS OBJECT_BYTES
Prints one JSON line: {"put_mib_s": .., "get_mib_s": ..}."""
import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

kind, conc, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = random.Random(9).randbytes(size)
name = "plain-%s-%d-%06x" % (kind, conc, random.getrandbits(24))
keys = ["obj-%05d" % i for i in range(n)]

if kind == "s3":
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ["TIERD_S3_ENDPOINT"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(max_pool_connections=conc, s3={"addressing_style": "path"}, retries={"mode": "standard"}),
    )
    s3.create_bucket(Bucket=name)
    put = lambda k: s3.put_object(Bucket=name, Key=k, Body=data)
    get = lambda k: len(s3.get_object(Bucket=name, Key=k)["Body"].read())
elif kind == "azure":
    from azure.storage.blob import BlobServiceClient

    conn = (
        "DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;"
        % (os.environ["TIERD_AZURITE_ACCOUNT"], os.environ["TIERD_AZURITE_KEY"], os.environ["TIERD_AZURITE_ENDPOINT"])
    )
    svc = BlobServiceClient.from_connection_string(conn)
    container = svc.create_container(name)
    # PLAIN_MD5=1: send a Content-MD5 the service verifies, as tierd does.
    md5 = os.environ.get("PLAIN_MD5") == "1"
    put = lambda k: container.upload_blob(k, data, overwrite=True, validate_content=md5)
    get = lambda k: len(container.download_blob(k).readall())
else:
    sys.exit("unknown kind " + kind)

with ThreadPoolExecutor(conc) as pool:
    t0 = time.perf_counter()
    list(pool.map(put, keys))
    t_put = time.perf_counter() - t0
    t0 = time.perf_counter()
    sizes = list(pool.map(get, keys))
    t_get = time.perf_counter() - t0
assert all(s == size for s in sizes), "short read"
# Untimed: leave the emulator as empty as it was (as the tierd side does).
if kind == "s3":
    with ThreadPoolExecutor(conc) as pool:
        list(pool.map(lambda k: s3.delete_object(Bucket=name, Key=k), keys))
    s3.delete_bucket(Bucket=name)
else:
    container.delete_container()
mib = n * size / (1 << 20)
print(json.dumps({"put_mib_s": round(mib / t_put, 1), "get_mib_s": round(mib / t_get, 1)}))
