"""Plain-client baselines for bench/tiering.sh, against the same LocalStack.
  plain_s3.py put FILE CONCURRENCY        PUT FILE as 4 MiB objects; prints MiB/s
  plain_s3.py get FILE CONCURRENCY        GET them back; prints MiB/s and the
                                          client's CPU seconds per GiB
  plain_s3.py ranged N                    N random 4 KiB ranged GETs; prints p50 p99 (ms)"""
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

CHUNK = 4 << 20
mode = sys.argv[1]
s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["TIERD_S3_ENDPOINT"],
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
    config=Config(max_pool_connections=64, s3={"addressing_style": "path"}),
)
bucket = "plain-tiering"
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass

if mode in ("put", "get"):
    path, conc = sys.argv[2], int(sys.argv[3])
    size = os.path.getsize(path)
    n = size // CHUNK

    def put(i):
        with open(path, "rb") as f:
            f.seek(i * CHUNK)
            s3.put_object(Bucket=bucket, Key="obj-%05d" % i, Body=f.read(CHUNK))

    def get(i):
        return len(s3.get_object(Bucket=bucket, Key="obj-%05d" % i)["Body"].read())

    t0, c0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(conc) as pool:
        list(pool.map(put if mode == "put" else get, range(n)))
    mib_s = size / (1 << 20) / (time.perf_counter() - t0)
    if mode == "put":
        print("%.1f" % mib_s)
    else:
        print("%.1f %.2f" % (mib_s, (time.process_time() - c0) / (size / (1 << 30))))
elif mode == "ranged":
    n = int(sys.argv[2])
    objs = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    lat = []
    rnd = random.Random(1)
    for _ in range(n):
        key = rnd.choice(objs)
        off = rnd.randrange(0, CHUNK // 4096) * 4096
        t0 = time.perf_counter()
        s3.get_object(Bucket=bucket, Key=key, Range="bytes=%d-%d" % (off, off + 4095))["Body"].read()
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    print("%.2f %.2f" % (lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]))
