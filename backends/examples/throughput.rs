//! PUT and GET throughput of one backend through tierd's backend stack
//! (the retry, instrumentation and limit layers over the S3 or Azure client),
//! for bench/backends.sh.
//! Usage: throughput s3|azure CONCURRENCY OBJECTS OBJECT_BYTES
//! Endpoints come from the emulator environment (localstack/up.sh). Prints one
//! JSON line: {"put_mib_s": .., "get_mib_s": ..}.
// Measures real elapsed time of real I/O: the wall clock is the point here.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use backends::{
    build, conformance, AzureConfig, BackendConfig, BackendMetrics, PutOptions, RequestLimits,
    S3Config, Secret,
};
use futures::{StreamExt, TryStreamExt};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run under localstack/with-emulators.sh"))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: throughput s3|azure CONCURRENCY OBJECTS OBJECT_BYTES");
        std::process::exit(2);
    }
    let (kind, conc, n, size) = (
        args[1].as_str(),
        args[2].parse::<usize>().expect("concurrency"),
        args[3].parse::<usize>().expect("objects"),
        args[4].parse::<usize>().expect("object bytes"),
    );
    let limits = RequestLimits {
        max_concurrency: conc,
        attempt_timeout: Duration::from_secs(60),
        deadline: Duration::from_secs(300),
        ..Default::default()
    };
    let bucket = format!(
        "bench-{kind}-{conc}-{:06x}",
        rand::random::<u32>() & 0xffffff
    );
    let config = match kind {
        "s3" => BackendConfig::S3(S3Config {
            bucket: bucket.clone(),
            endpoint: Some(env("TIERD_S3_ENDPOINT")),
            path_style: true,
            access_key_id: Some("test".into()),
            secret_access_key: Some(Secret::new("test")),
            create_bucket: true,
            limits,
            ..Default::default()
        }),
        "azure" => BackendConfig::Azure(AzureConfig {
            account: env("TIERD_AZURITE_ACCOUNT"),
            access_key: Some(Secret::new(env("TIERD_AZURITE_KEY"))),
            endpoint: Some(env("TIERD_AZURITE_ENDPOINT")),
            container: bucket.clone(),
            create_container: true,
            limits,
            ..Default::default()
        }),
        other => panic!("unknown kind {other}"),
    };
    let store = build(
        kind,
        &config,
        std::path::Path::new("/nonexistent"),
        BackendMetrics::unregistered(),
    )
    .await
    .expect("build backend");
    let data = conformance::pattern(size, 9);
    let keys: Vec<String> = (0..n).map(|i| format!("obj-{i:05}")).collect();
    let opts = PutOptions::default();

    let t0 = Instant::now();
    futures::stream::iter(keys.iter())
        .map(|k| store.put(k, data.clone(), &opts))
        .buffer_unordered(conc)
        .try_collect::<Vec<_>>()
        .await
        .expect("put");
    let put = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    // Each body is checked and dropped, as the plain client does and as
    // tierd's rehydration does (keeping all of them would time page faults).
    let lens: Vec<usize> = futures::stream::iter(keys.iter())
        .map(|k| async { store.get(k).await.map(|b| b.len()) })
        .buffer_unordered(conc)
        .try_collect()
        .await
        .expect("get");
    let get = t0.elapsed().as_secs_f64();
    assert!(lens.iter().all(|&l| l == size), "short read");

    // Untimed: leave the emulator as empty as it was, so that runs do not
    // slow each other down.
    futures::stream::iter(keys.iter())
        .map(|k| store.delete(k))
        .buffer_unordered(conc)
        .try_collect::<Vec<_>>()
        .await
        .expect("delete");

    let mib = (n * size) as f64 / (1 << 20) as f64;
    println!(
        "{{\"put_mib_s\": {:.1}, \"get_mib_s\": {:.1}}}",
        mib / put,
        mib / get
    );
}
