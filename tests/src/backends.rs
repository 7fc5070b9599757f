//! Object-store backends for end-to-end tests: configuration for the daemon and
//! tampering with stored objects behind its back, for fs, LocalStack and Azurite.

use std::process::Command;

use crate::Daemon;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fs,
    S3,
    Azure,
}

/// A backend named `store` for the daemon's configuration.
#[derive(Debug, Clone)]
pub struct Spec {
    pub kind: Kind,
    pub toml: String,
    /// Bucket or container (empty for fs).
    pub bucket: String,
}

fn env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("TIERD_REQUIRE_EMULATORS").as_deref() == Ok("1") {
                panic!("{var} is not set but TIERD_REQUIRE_EMULATORS=1: run under localstack/with-emulators.sh");
            }
            eprintln!("skipping: {var} is not set (run under localstack/with-emulators.sh)");
            None
        }
    }
}

fn unique() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), t)
}

const FAST_RETRIES: &str = "[backends.store.limits]\ninitial_backoff = \"20ms\"\nmax_backoff = \"200ms\"\nmax_attempts = 4\nattempt_timeout = \"5s\"\ndeadline = \"20s\"\n";

/// The backend of `kind`, or `None` (test skipped) when its emulator is absent.
pub fn spec(kind: Kind) -> Option<Spec> {
    match kind {
        Kind::Fs => Some(Spec {
            kind,
            toml: format!("[backends.store]\nkind = \"fs\"\n{FAST_RETRIES}"),
            bucket: String::new(),
        }),
        Kind::S3 => {
            let ep = env("TIERD_S3_ENDPOINT")?;
            let bucket = format!("e2e-{}", unique());
            Some(Spec {
                kind,
                toml: format!(
                    "[backends.store]\nkind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"tierd/\"\nendpoint = \"{ep}\"\npath_style = true\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\ncreate_bucket = true\n{FAST_RETRIES}"
                ),
                bucket,
            })
        }
        Kind::Azure => {
            let ep = env("TIERD_AZURITE_ENDPOINT")?;
            let account = env("TIERD_AZURITE_ACCOUNT")?;
            let key = env("TIERD_AZURITE_KEY")?;
            let bucket = format!("e2e-{}", unique());
            Some(Spec {
                kind,
                toml: format!(
                    "[backends.store]\nkind = \"azure\"\naccount = \"{account}\"\naccess_key = \"{key}\"\ncontainer = \"{bucket}\"\nprefix = \"tierd/\"\nendpoint = \"{ep}\"\ncreate_container = true\n{FAST_RETRIES}"
                ),
                bucket,
            })
        }
    }
}

/// What to do to a stored object.
#[derive(Debug, Clone, Copy)]
pub enum Tamper {
    /// Flip one byte in the middle.
    Corrupt,
    Delete,
}

fn python(code: &str, args: &[&str]) -> String {
    let py = std::env::var("TIERD_EMU_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(py)
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const AZURE_CONTAINER: &str = "import sys, os\n\
    from azure.storage.blob import BlobServiceClient\n\
    conn = 'DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;' % (\n\
        os.environ['TIERD_AZURITE_ACCOUNT'], os.environ['TIERD_AZURITE_KEY'], os.environ['TIERD_AZURITE_ENDPOINT'])\n\
    c = BlobServiceClient.from_connection_string(conn).get_container_client(sys.argv[1])\n";

/// Unfinished uploads in the backend, counted behind the daemon's back:
/// temporary files (fs), multipart uploads (S3), blobs with only
/// uncommitted blocks (Azure).
pub fn partial_uploads(spec: &Spec, d: &Daemon) -> usize {
    let out = match spec.kind {
        Kind::Fs => {
            let tmp = d.data_dir().join("objects").join(".tmp");
            return std::fs::read_dir(tmp).map(|r| r.count()).unwrap_or(0);
        }
        Kind::S3 => python(
            "import sys, os, boto3\n\
             s3 = boto3.client('s3', endpoint_url=os.environ['TIERD_S3_ENDPOINT'], region_name='us-east-1',\n\
                 aws_access_key_id='test', aws_secret_access_key='test')\n\
             print(len(s3.list_multipart_uploads(Bucket=sys.argv[1]).get('Uploads', [])))\n",
            &[&spec.bucket],
        ),
        Kind::Azure => python(
            &format!(
                "{AZURE_CONTAINER}\
                 committed = set(b.name for b in c.list_blobs())\n\
                 every = set(b.name for b in c.list_blobs(include=['uncommittedblobs']))\n\
                 print(len(every - committed))\n"
            ),
            &[&spec.bucket],
        ),
    };
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("count: {out:?}"))
}

/// Changes the object `key` (as tierd names it) behind the daemon's back.
pub fn tamper(spec: &Spec, d: &Daemon, key: &str, what: Tamper) {
    let action = match what {
        Tamper::Corrupt => "corrupt",
        Tamper::Delete => "delete",
    };
    match spec.kind {
        Kind::Fs => {
            let path = d.data_dir().join("objects").join(key);
            match what {
                Tamper::Delete => std::fs::remove_file(&path).expect("delete object file"),
                Tamper::Corrupt => {
                    let mut b = std::fs::read(&path).expect("read object file");
                    let mid = b.len() / 2;
                    b[mid] ^= 0x5a;
                    std::fs::write(&path, b).expect("write object file");
                }
            }
        }
        Kind::S3 => drop(python(
            "import sys, os, boto3\n\
             s3 = boto3.client('s3', endpoint_url=os.environ['TIERD_S3_ENDPOINT'], region_name='us-east-1',\n\
                 aws_access_key_id='test', aws_secret_access_key='test')\n\
             bucket, key, action = sys.argv[1], 'tierd/' + sys.argv[2], sys.argv[3]\n\
             if action == 'delete':\n    s3.delete_object(Bucket=bucket, Key=key)\n\
             else:\n    b = bytearray(s3.get_object(Bucket=bucket, Key=key)['Body'].read())\n    b[len(b)//2] ^= 0x5a\n    s3.put_object(Bucket=bucket, Key=key, Body=bytes(b))\n",
            &[&spec.bucket, key, action],
        )),
        Kind::Azure => drop(python(
            &format!(
                "{AZURE_CONTAINER}\
                 key, action = 'tierd/' + sys.argv[2], sys.argv[3]\n\
                 if action == 'delete':\n    c.delete_blob(key)\n\
                 else:\n    b = bytearray(c.download_blob(key).readall())\n    b[len(b)//2] ^= 0x5a\n    c.upload_blob(key, bytes(b), overwrite=True)\n"
            ),
            &[&spec.bucket, key, action],
        )),
    }
}
