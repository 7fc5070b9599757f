//! PNG line chart of the bytes each simulated policy keeps on local disk over
//! time, one coloured line per policy.
//!
//! This module owns the chart's look and its embedded font: DejaVu Sans
//! (`fonts/DejaVuSans.ttf`, licence beside it) is compiled in and registered
//! once with plotters' pure-Rust `ab_glyph` text renderer, so drawing needs no
//! fontconfig, FreeType or font file at run time. Invariant: whatever the
//! input (no series, empty series, all zeros, NaN or infinite values) the
//! result is a [`WIDTH`]×[`HEIGHT`] PNG or an error, never a panic.

use std::fmt::Display;
use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 600;

static FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
/// plotters resolves its default text style to this family name.
const FAMILY: &str = "sans-serif";
/// More points than this per line are thinned: a 1000-pixel-wide chart cannot
/// show them, and plotting millions of segments is slow.
const MAX_POINTS: usize = 4000;
const GIB: f64 = (1u64 << 30) as f64;

/// Tableau 10: distinct, colour-blind-friendlier line colours.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("{path}: cannot draw chart: {reason}")]
    Draw { path: String, reason: String },
    #[error("the embedded chart font could not be loaded")]
    Font,
}

fn draw_error(path: &Path, reason: impl Display) -> ChartError {
    ChartError::Draw {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn register_font() -> Result<(), ChartError> {
    // plotters keeps registered fonts in a process-wide table; once is enough.
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(ChartError::Font)
    }
}

/// Keeps at most about [`MAX_POINTS`] points, preserving each bucket's lowest
/// and highest value (so peaks stay visible) and the last point.
fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let per_bucket = points.len().div_ceil(MAX_POINTS / 2);
    let mut out = Vec::with_capacity(MAX_POINTS + 1);
    for chunk in points.chunks(per_bucket) {
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in chunk.iter().enumerate() {
            if p.1 < chunk[lo].1 {
                lo = i;
            }
            if p.1 > chunk[hi].1 {
                hi = i;
            }
        }
        let (first, second) = (lo.min(hi), lo.max(hi));
        out.push(chunk[first]);
        if second != first {
            out.push(chunk[second]);
        }
    }
    if let (Some(&last), Some(&kept)) = (points.last(), out.last()) {
        if last != kept {
            out.push(last);
        }
    }
    out
}

/// Axis range covering `values` and 0, never empty.
fn range(values: impl Iterator<Item = f64>, headroom: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = hi - lo;
    if span > 0.0 {
        (lo, hi + span * headroom)
    } else {
        (lo, lo + 1.0)
    }
}

/// Draws `series` (name, points of (days, bytes)) as lines against days, with
/// bytes shown in GiB, to a [`WIDTH`]×[`HEIGHT`] PNG at `path`, which must end
/// in `.png`. Non-finite points are left out.
pub fn local_bytes_png(
    path: &Path,
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<(), ChartError> {
    let is_png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png {
        return Err(draw_error(path, "the file name must end in .png"));
    }
    register_font()?;

    let lines: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, points)| {
            let finite: Vec<(f64, f64)> = points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(days, bytes)| (days, bytes / GIB))
                .collect();
            (name.as_str(), thin(&finite))
        })
        .collect();
    let all = || lines.iter().flat_map(|(_, points)| points.iter());
    let (x_lo, x_hi) = range(all().map(|p| p.0), 0.0);
    let (y_lo, y_hi) = range(all().map(|p| p.1), 0.05);

    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_error(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 24))
        .margin(16)
        // Room for the last x label, centred on the right edge.
        .margin_right(32)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
        .map_err(|e| draw_error(path, e))?;
    chart
        .configure_mesh()
        .x_desc("time (days)")
        .y_desc("local data (GiB)")
        .axis_desc_style((FAMILY, 16))
        .label_style((FAMILY, 13))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(|e| draw_error(path, e))?;

    for (i, (name, points)) in lines.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| draw_error(path, e))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
            });
    }
    if !lines.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 14))
            .draw()
            .map_err(|e| draw_error(path, e))?;
    }
    root.present().map_err(|e| draw_error(path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Width and height from a PNG's signature and IHDR chunk.
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert!(bytes.len() > 24, "file too short for a PNG");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR", "first chunk is IHDR");
        let w = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
        let h = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        (w, h)
    }

    fn render(dir: &Path, name: &str, series: &[(String, Vec<(f64, f64)>)]) -> Vec<u8> {
        let path = dir.join(name);
        local_bytes_png(&path, "local bytes by policy", series).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(png_size(&bytes), (WIDTH, HEIGHT));
        bytes
    }

    fn ramp(scale: f64) -> Vec<(f64, f64)> {
        (0..=100)
            .map(|i| (i as f64 * 0.3, scale * i as f64 * 1e8))
            .collect()
    }

    #[test]
    fn two_series_make_a_png_and_data_changes_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let a = vec![
            ("lru".to_string(), ramp(1.0)),
            ("heat".to_string(), ramp(0.5)),
        ];
        let b = vec![
            ("lru".to_string(), ramp(1.0)),
            ("heat".to_string(), ramp(0.2)),
        ];
        let png_a = render(dir.path(), "a.png", &a);
        let png_a2 = render(dir.path(), "a2.png", &a);
        let png_b = render(dir.path(), "b.png", &b);
        assert_eq!(png_a, png_a2, "same input, same image");
        assert_ne!(png_a, png_b, "different data, different image");
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        render(dir.path(), "none.png", &[]);
        render(
            dir.path(),
            "empty.png",
            &[("nothing".to_string(), Vec::new())],
        );
        let zeros: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 0.0)).collect();
        render(dir.path(), "zeros.png", &[("idle".to_string(), zeros)]);
        render(
            dir.path(),
            "point.png",
            &[("one".to_string(), vec![(0.0, 0.0)])],
        );
        let odd = vec![
            (f64::NAN, 1.0),
            (1.0, f64::INFINITY),
            (2.0, 5e9),
            (3.0, -1e9),
        ];
        render(dir.path(), "odd.png", &[("odd".to_string(), odd)]);
        let many: Vec<String> = (0..15).map(|i| format!("policy {i}")).collect();
        let series: Vec<(String, Vec<(f64, f64)>)> = many
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, ramp(i as f64)))
            .collect();
        render(dir.path(), "many.png", &series);
    }

    #[test]
    fn long_series_are_thinned_but_keep_peaks() {
        let mut points: Vec<(f64, f64)> = (0..1_000_000).map(|i| (i as f64 / 1e5, 1.0)).collect();
        points[123_457].1 = 99.0;
        points[765_433].1 = -5.0;
        let thinned = thin(&points);
        assert!(thinned.len() <= MAX_POINTS + 1, "{}", thinned.len());
        assert!(thinned.contains(&points[123_457]));
        assert!(thinned.contains(&points[765_433]));
        assert_eq!(thinned.last(), points.last());
        assert!(
            thinned.windows(2).all(|w| w[0].0 <= w[1].0),
            "x stays ordered"
        );

        let dir = tempfile::tempdir().unwrap();
        render(dir.path(), "long.png", &[("long".to_string(), points)]);
    }

    #[test]
    fn bad_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = local_bytes_png(&dir.path().join("chart.svg"), "t", &[]).unwrap_err();
        assert!(e.to_string().contains(".png"), "{e}");
        let e = local_bytes_png(&dir.path().join("missing/chart.png"), "t", &[]).unwrap_err();
        assert!(e.to_string().contains("missing/chart.png"), "{e}");
    }
}
