//! Cloud pricing table and the monthly cost model of `tierd simulate`.
//!
//! This module owns [`Pricing`] (list prices per object-store tier plus the
//! local block storage price, loadable from TOML/JSON with unknown keys
//! refused), its shipped defaults, and [`monthly_cost`], which turns the
//! [`Usage`] a simulated policy produced into a [`Cost`]. Invariant: every
//! figure in a [`Cost`] is US dollars per 30-day month, whatever the length of
//! the trace, so policies and traces of different lengths compare directly.
//!
//! Choices, made to match how the clouds bill:
//! - **GB is 10^9 bytes** and **a month is 30 days** ([`MONTH_MS`]).
//! - **Storage** is the average number of bytes held over the trace
//!   (`byte_ms / duration_ms`) times the GB-month price: holding 1 GB for the
//!   whole trace costs one GB-month, whatever the trace length.
//! - **Requests and retrieval** (PUT, GET, GB read back) are counted over the
//!   trace and scaled to a month by `30 days / duration`, i.e. the trace is
//!   assumed to repeat.
//! - **Early deletion**: an object deleted at an age below the tier's
//!   `min_storage_days` is billed for the remaining days at the storage price
//!   (`remaining_days × GB × price / 30`), as S3 IA/Glacier and Azure cool/cold
//!   do; the charges are scaled to a month like requests.
//! - Local storage is priced on the bytes actually held, as if provisioned
//!   capacity followed use; a real EBS volume bills its provisioned size.
//!
//! Not modelled: minimum billable object size (128 KiB on S3 IA/Glacier IR;
//! tierd's objects are whole extents, 4 MiB by default), data transfer
//! (same-region traffic is free), lifecycle transition requests, volume
//! discounts beyond the first price band, free tiers, and taxes.

use std::collections::BTreeMap;

/// A 30-day month in milliseconds.
pub const MONTH_MS: u64 = 30 * DAY_MS;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// Cloud bills count decimal gigabytes.
const GB: f64 = 1e9;

/// List prices of one object-store tier, in US dollars.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub storage_gb_month: f64,
    /// PUT (write) requests, per 1000.
    pub put_per_1000: f64,
    /// GET (read) requests, per 1000.
    pub get_per_1000: f64,
    /// Per GB read back (0 where the tier has no retrieval fee).
    pub retrieval_per_gb: f64,
    /// Objects deleted younger than this are billed up to it.
    #[serde(default)]
    pub min_storage_days: f64,
    #[serde(default)]
    pub note: Option<String>,
}

/// The pricing table. Missing keys take the shipped defaults (a file that
/// sets `tiers` replaces the whole default tier table).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pricing {
    /// Date the list prices were taken, `YYYY-MM-DD`.
    pub taken: String,
    /// Where they were taken from (URLs).
    pub source: String,
    /// Local block storage (e.g. EBS gp3), per GB-month.
    pub local_gb_month: f64,
    pub tiers: BTreeMap<String, Price>,
}

/// What one simulated policy did over a trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Length of the trace in simulated time; must be > 0.
    pub duration_ms: u64,
    /// Integral of bytes held locally over time, in byte·ms.
    pub local_byte_ms: f64,
    /// Integral of bytes held in the object store over time, in byte·ms.
    pub remote_byte_ms: f64,
    pub puts: u64,
    pub gets: u64,
    pub bytes_retrieved: u64,
    /// Objects deleted during the trace: `(bytes, age_ms)` at deletion. Only
    /// those younger than the tier's minimum storage duration cost anything.
    pub deleted_objects: Vec<(u64, u64)>,
}

/// US dollars per 30-day month.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Cost {
    pub local_storage: f64,
    pub remote_storage: f64,
    pub requests: f64,
    pub retrieval: f64,
    pub early_delete: f64,
    pub total: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error("unknown tier {tier:?}; known tiers: {}", known.join(", "))]
    UnknownTier { tier: String, known: Vec<String> },
    #[error("invalid pricing: {0}")]
    InvalidPricing(String),
    #[error("invalid usage: {0}")]
    InvalidUsage(String),
}

fn check_amount(what: &str, value: f64) -> Result<(), CostError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(CostError::InvalidPricing(format!(
            "{what} is {value}; prices must be finite and not negative"
        )))
    }
}

fn check_price(tier: &str, p: &Price) -> Result<(), CostError> {
    check_amount(
        &format!("tiers.{tier}.storage_gb_month"),
        p.storage_gb_month,
    )?;
    check_amount(&format!("tiers.{tier}.put_per_1000"), p.put_per_1000)?;
    check_amount(&format!("tiers.{tier}.get_per_1000"), p.get_per_1000)?;
    check_amount(
        &format!("tiers.{tier}.retrieval_per_gb"),
        p.retrieval_per_gb,
    )?;
    check_amount(
        &format!("tiers.{tier}.min_storage_days"),
        p.min_storage_days,
    )
}

/// True for a real calendar date written `YYYY-MM-DD`.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &s[r];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days_in_month).contains(&day)
}

impl Pricing {
    /// Refuses negative or non-finite prices, a `taken` that is not a
    /// `YYYY-MM-DD` date, an empty tier table and empty tier names.
    pub fn validate(&self) -> Result<(), CostError> {
        if !is_date(&self.taken) {
            return Err(CostError::InvalidPricing(format!(
                "taken is {:?}; expected the date the prices were taken as YYYY-MM-DD",
                self.taken
            )));
        }
        check_amount("local_gb_month", self.local_gb_month)?;
        if self.tiers.is_empty() {
            return Err(CostError::InvalidPricing("no tiers priced".to_string()));
        }
        for (name, price) in &self.tiers {
            if name.trim().is_empty() {
                return Err(CostError::InvalidPricing(
                    "a tier has an empty name".to_string(),
                ));
            }
            check_price(name, price)?;
        }
        Ok(())
    }
}

impl Default for Pricing {
    /// List prices for the first price band (the first 50 TB a month);
    /// each tier's `note` says where its figures come from.
    fn default() -> Self {
        const AWS_REQUESTS: &str = "request prices are AWS's long-standing S3 list prices; \
            the search store had no page quoting them, so they were not re-checked on the taken date";
        let tier = |storage, put, get, retrieval, min_days, note: String| Price {
            storage_gb_month: storage,
            put_per_1000: put,
            get_per_1000: get,
            retrieval_per_gb: retrieval,
            min_storage_days: min_days,
            note: Some(note),
        };
        let aws = |what: &str| {
            format!(
                "AWS S3 {what}, us-east-1; storage, retrieval and minimum duration from a \
                     US East price table dated May/June 2026; {AWS_REQUESTS}"
            )
        };
        let azure = |what: &str| {
            format!("Azure Blob block blob {what}, LRS, first 50 TB; storage and operation prices \
                     from a table labelled East US 2 (no page quoting East US itself was found; \
                     check before relying on them), converted from per 10,000 to per 1000 \
                     operations; PUT = write operations, GET = read operations; retrieval per GB and \
                     minimum days are Azure's long-standing figures for this tier")
        };
        let mut tiers = BTreeMap::new();
        tiers.insert(
            "s3-standard".to_string(),
            tier(0.023, 0.005, 0.0004, 0.0, 0.0, aws("Standard")),
        );
        tiers.insert(
            "s3-standard-ia".to_string(),
            tier(0.0125, 0.01, 0.001, 0.01, 30.0, aws("Standard-IA")),
        );
        tiers.insert(
            "s3-glacier-ir".to_string(),
            tier(
                0.004,
                0.02,
                0.01,
                0.03,
                90.0,
                aws("Glacier Instant Retrieval"),
            ),
        );
        // Azure prices per 10,000 operations: hot write 0.05, read 0.004;
        // cool write 0.10, read 0.01; cold write 0.18, read 0.10.
        tiers.insert(
            "azure-hot".to_string(),
            tier(0.0184, 0.005, 0.0004, 0.0, 0.0, azure("hot tier")),
        );
        tiers.insert(
            "azure-cool".to_string(),
            tier(0.01, 0.01, 0.001, 0.01, 30.0, azure("cool tier")),
        );
        tiers.insert(
            "azure-cold".to_string(),
            tier(0.0036, 0.018, 0.01, 0.03, 90.0, azure("cold tier")),
        );
        Pricing {
            taken: "2026-06-05".to_string(),
            source: "https://www.usage.ai/blogs/aws/storage-cost/glacier-deep-archive-pricing/ \
                     (S3 storage classes, US East, updated 2026-06-05); \
                     https://kubequest.pages.dev/AZ-104/02-storage/scott-duffy/02-access-tiers-and-cost \
                     (Azure Blob access tiers, LRS, undated); \
                     https://www.saisci.com/aws/gp3-throughput-explained/ (EBS gp3 $0.08/GB-month, \
                     N. Virginia, 2021; unchanged list price); \
                     official pages: https://aws.amazon.com/s3/pricing/ \
                     https://azure.microsoft.com/pricing/details/storage/blobs/ \
                     https://aws.amazon.com/ebs/pricing/"
                .to_string(),
            local_gb_month: 0.08,
            tiers,
        }
    }
}

/// The price list objects of a class pay, from the kind of its backend
/// (`s3`, `azure`, `fs`) and its upload tier.
pub fn price_tier(backend_kind: &str, upload_tier: Option<&str>) -> String {
    let tier = upload_tier.unwrap_or_default().to_ascii_lowercase();
    match (backend_kind, tier.as_str()) {
        ("azure", "cool") => "azure-cool",
        ("azure", "cold") => "azure-cold",
        ("azure", _) => "azure-hot",
        (_, "standard_ia") => "s3-standard-ia",
        (_, "glacier_ir") => "s3-glacier-ir",
        _ => "s3-standard",
    }
    .to_string()
}

fn check_usage(u: &Usage) -> Result<f64, CostError> {
    if u.duration_ms == 0 {
        return Err(CostError::InvalidUsage(
            "trace duration is 0 ms; costs cannot be normalised to a month".to_string(),
        ));
    }
    for (what, v) in [
        ("local_byte_ms", u.local_byte_ms),
        ("remote_byte_ms", u.remote_byte_ms),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(CostError::InvalidUsage(format!("{what} is {v}")));
        }
    }
    Ok(u.duration_ms as f64)
}

/// Monthly cost of `u` with remote data on `tier`; see the module doc for the
/// normalisation.
pub fn monthly_cost(p: &Pricing, tier: &str, u: &Usage) -> Result<Cost, CostError> {
    let price = p.tiers.get(tier).ok_or_else(|| CostError::UnknownTier {
        tier: tier.to_string(),
        known: p.tiers.keys().cloned().collect(),
    })?;
    check_amount("local_gb_month", p.local_gb_month)?;
    check_price(tier, price)?;
    let duration_ms = check_usage(u)?;
    let per_month = MONTH_MS as f64 / duration_ms;

    let local_storage = u.local_byte_ms / duration_ms / GB * p.local_gb_month;
    let remote_storage = u.remote_byte_ms / duration_ms / GB * price.storage_gb_month;
    let requests = (u.puts as f64 * price.put_per_1000 + u.gets as f64 * price.get_per_1000)
        / 1000.0
        * per_month;
    let retrieval = u.bytes_retrieved as f64 / GB * price.retrieval_per_gb * per_month;
    let early: f64 = u
        .deleted_objects
        .iter()
        .map(|&(bytes, age_ms)| {
            let remaining_days = price.min_storage_days - age_ms as f64 / DAY_MS as f64;
            if remaining_days > 0.0 {
                remaining_days * bytes as f64 / GB * price.storage_gb_month / 30.0
            } else {
                0.0
            }
        })
        .sum();
    let early_delete = early * per_month;

    Ok(Cost {
        local_storage,
        remote_storage,
        requests,
        retrieval,
        early_delete,
        total: local_storage + remote_storage + requests + retrieval + early_delete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12_f64.max(b.abs() * 1e-9)
    }

    fn assert_close(a: f64, b: f64) {
        assert!(close(a, b), "{a} != {b}");
    }

    const GB_U: u64 = 1_000_000_000;

    #[test]
    fn defaults_validate_and_cover_the_shipped_tiers() {
        let p = Pricing::default();
        p.validate().unwrap();
        let names: Vec<&str> = p.tiers.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "azure-cold",
                "azure-cool",
                "azure-hot",
                "s3-glacier-ir",
                "s3-standard",
                "s3-standard-ia"
            ]
        );
        assert_close(p.local_gb_month, 0.08);
        assert!(p.tiers.values().all(|t| t.note.is_some()));
    }

    #[test]
    fn one_gb_for_a_full_month_on_s3_standard() {
        let u = Usage {
            duration_ms: MONTH_MS,
            remote_byte_ms: GB_U as f64 * MONTH_MS as f64,
            ..Usage::default()
        };
        let c = monthly_cost(&Pricing::default(), "s3-standard", &u).unwrap();
        assert_close(c.remote_storage, 0.023);
        assert_close(c.total, 0.023);
        assert_eq!(c.local_storage, 0.0);
    }

    #[test]
    fn storage_is_an_average_so_trace_length_does_not_matter() {
        // 2 GB held for the whole of a 3-day trace is 2 GB-month.
        let dur = 3 * DAY_MS;
        let u = Usage {
            duration_ms: dur,
            local_byte_ms: 2.0 * GB_U as f64 * dur as f64,
            ..Usage::default()
        };
        let c = monthly_cost(&Pricing::default(), "s3-standard", &u).unwrap();
        assert_close(c.local_storage, 2.0 * 0.08);
        // Half the time at 1 GB averages to 0.5 GB.
        let u = Usage {
            duration_ms: dur,
            remote_byte_ms: GB_U as f64 * (dur / 2) as f64,
            ..Usage::default()
        };
        let c = monthly_cost(&Pricing::default(), "s3-standard-ia", &u).unwrap();
        assert_close(c.remote_storage, 0.5 * 0.0125);
    }

    #[test]
    fn requests_over_15_days_are_doubled() {
        let u = Usage {
            duration_ms: 15 * DAY_MS,
            gets: 1000,
            puts: 500,
            ..Usage::default()
        };
        let c = monthly_cost(&Pricing::default(), "s3-standard", &u).unwrap();
        // 2000 GETs and 1000 PUTs a month.
        assert_close(c.requests, 2.0 * 0.0004 + 1.0 * 0.005);
        assert_close(c.total, c.requests);
    }

    #[test]
    fn retrieval_is_per_gb_and_scaled() {
        let u = Usage {
            duration_ms: 10 * DAY_MS,
            bytes_retrieved: 5 * GB_U,
            ..Usage::default()
        };
        let c = monthly_cost(&Pricing::default(), "s3-glacier-ir", &u).unwrap();
        assert_close(c.retrieval, 5.0 * 0.03 * 3.0);
        let c = monthly_cost(&Pricing::default(), "s3-standard", &u).unwrap();
        assert_eq!(c.retrieval, 0.0);
    }

    #[test]
    fn early_deletion_at_10_days_on_a_30_day_tier_charges_20_days() {
        let u = Usage {
            duration_ms: MONTH_MS,
            deleted_objects: vec![
                (GB_U, 10 * DAY_MS),
                (GB_U, 30 * DAY_MS),
                (GB_U, 45 * DAY_MS),
            ],
            ..Usage::default()
        };
        let c = monthly_cost(&Pricing::default(), "s3-standard-ia", &u).unwrap();
        assert_close(c.early_delete, 20.0 * 0.0125 / 30.0);
        // No minimum on Standard.
        let c = monthly_cost(&Pricing::default(), "s3-standard", &u).unwrap();
        assert_eq!(c.early_delete, 0.0);
        // Over a 10-day trace the same deletions happen three times a month.
        let u = Usage {
            duration_ms: 10 * DAY_MS,
            ..u
        };
        let c = monthly_cost(&Pricing::default(), "azure-cold", &u).unwrap();
        let per_trace = (80.0 + 60.0 + 45.0) * 0.0036 / 30.0;
        assert_close(c.early_delete, 3.0 * per_trace);
    }

    #[test]
    fn total_is_the_sum() {
        let u = Usage {
            duration_ms: 7 * DAY_MS,
            local_byte_ms: 3e9 * (7 * DAY_MS) as f64,
            remote_byte_ms: 10e9 * (7 * DAY_MS) as f64,
            puts: 1234,
            gets: 5678,
            bytes_retrieved: 2 * GB_U,
            deleted_objects: vec![(4 << 20, DAY_MS)],
        };
        let c = monthly_cost(&Pricing::default(), "azure-cool", &u).unwrap();
        assert_close(
            c.total,
            c.local_storage + c.remote_storage + c.requests + c.retrieval + c.early_delete,
        );
        assert!(c.early_delete > 0.0 && c.retrieval > 0.0 && c.requests > 0.0);
    }

    #[test]
    fn unknown_tier_names_it_and_lists_the_known_ones() {
        let e = monthly_cost(
            &Pricing::default(),
            "s3-deep-archive",
            &Usage {
                duration_ms: 1,
                ..Usage::default()
            },
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("\"s3-deep-archive\""), "{msg}");
        assert!(msg.contains("s3-standard, s3-standard-ia"), "{msg}");
        assert!(msg.contains("azure-cold"), "{msg}");
    }

    #[test]
    fn zero_duration_and_bad_usage_are_errors() {
        let p = Pricing::default();
        assert!(matches!(
            monthly_cost(&p, "s3-standard", &Usage::default()),
            Err(CostError::InvalidUsage(_))
        ));
        let u = Usage {
            duration_ms: 1,
            local_byte_ms: f64::NAN,
            ..Usage::default()
        };
        assert!(matches!(
            monthly_cost(&p, "s3-standard", &u),
            Err(CostError::InvalidUsage(_))
        ));
    }

    #[test]
    fn validate_refuses_bad_tables() {
        let mut p = Pricing {
            taken: "June 2026".to_string(),
            ..Pricing::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("YYYY-MM-DD"));
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-1-01",
            "20a6-01-01",
            "2025-02-29",
        ] {
            p.taken = bad.to_string();
            assert!(p.validate().is_err(), "{bad}");
        }
        p.taken = "2024-02-29".to_string();
        p.validate().unwrap();

        let mut q = Pricing::default();
        if let Some(t) = q.tiers.get_mut("azure-hot") {
            t.get_per_1000 = -0.1;
        }
        let msg = q.validate().unwrap_err().to_string();
        assert!(msg.contains("tiers.azure-hot.get_per_1000"), "{msg}");
        // monthly_cost checks the tier it uses too.
        let u = Usage {
            duration_ms: 1,
            ..Usage::default()
        };
        assert!(monthly_cost(&q, "azure-hot", &u).is_err());

        let r = Pricing {
            local_gb_month: f64::INFINITY,
            ..Pricing::default()
        };
        assert!(r.validate().is_err());

        let mut s = Pricing::default();
        s.tiers.clear();
        assert!(s.validate().unwrap_err().to_string().contains("no tiers"));
    }

    #[test]
    fn toml_round_trip_and_partial_files() {
        let p = Pricing::default();
        let text = toml::to_string(&p).unwrap();
        let back: Pricing = toml::from_str(&text).unwrap();
        assert_eq!(back, p);

        // A file that only changes the local price keeps the default tiers.
        let partial: Pricing = toml::from_str("local_gb_month = 0.1\n").unwrap();
        assert_close(partial.local_gb_month, 0.1);
        assert_eq!(partial.tiers, p.tiers);

        // A custom tier table replaces the defaults; min_storage_days and note default.
        let custom: Pricing = toml::from_str(
            "taken = \"2026-01-02\"\n[tiers.minio]\nstorage_gb_month = 0.01\nput_per_1000 = 0\n\
             get_per_1000 = 0\nretrieval_per_gb = 0\n",
        )
        .unwrap();
        custom.validate().unwrap();
        assert_eq!(custom.tiers.len(), 1);
        assert_eq!(custom.tiers["minio"].min_storage_days, 0.0);
        assert_eq!(custom.tiers["minio"].note, None);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<Pricing>("local_gb_mnth = 0.1\n").unwrap_err();
        assert!(e.to_string().contains("local_gb_mnth"), "{e}");
        let e = toml::from_str::<Pricing>(
            "[tiers.x]\nstorage_gb_month = 0.01\nput_per_1000 = 0\nget_per_1000 = 0\n\
             retrieval_per_gb = 0\nmin_days = 3\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("min_days"), "{e}");
    }
}
