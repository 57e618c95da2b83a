//! Hand-written SVG bar charts for `bench` reports (no plotting dependency).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::model::{App, Report, RunResult};

const COLORS: &[&str] = &[
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis maximum and tick step for `max`.
pub fn nice_scale(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 0.2);
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn fmt_num(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A grouped bar chart: one group per label, one bar per series.
pub fn grouped_bars(
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> String {
    let (w, h) = (900.0, 420.0);
    let (left, right, top, bottom) = (80.0, 170.0, 40.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .fold(0.0f64, f64::max);
    let (ymax, step) = nice_scale(max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        left + pw / 2.0,
        esc(title)
    );
    // y axis and grid
    let mut v = 0.0;
    while v <= ymax + step / 2.0 {
        let y = top + ph - v / ymax * ph;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 6.0,
            y + 4.0,
            fmt_num(v)
        );
        v += step;
    }
    let _ = writeln!(
        s,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        top + ph / 2.0,
        esc(y_label)
    );
    let ng = groups.len().max(1) as f64;
    let ns = series.len().max(1) as f64;
    let gw = pw / ng;
    let bw = (gw * 0.8) / ns;
    for (gi, g) in groups.iter().enumerate() {
        let gx = left + gi as f64 * gw;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            gx + gw / 2.0,
            top + ph + 18.0,
            esc(g)
        );
        for (si, (_, vals)) in series.iter().enumerate() {
            if let Some(Some(val)) = vals.get(gi) {
                let bh = val / ymax * ph;
                let x = gx + gw * 0.1 + si as f64 * bw;
                let y = top + ph - bh;
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                    (bw - 1.0).max(1.0),
                    COLORS[si % COLORS.len()],
                    esc(&series[si].0),
                    fmt_num(*val)
                );
            }
        }
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        top + ph,
        left + pw,
        top + ph
    );
    for (si, (name, _)) in series.iter().enumerate() {
        let y = top + 10.0 + si as f64 * 20.0;
        let x = left + pw + 15.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="{y}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            COLORS[si % COLORS.len()],
            x + 18.0,
            y + 10.0,
            esc(name)
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

fn servers_in_order(runs: &[&RunResult]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in runs {
        if !out.contains(&r.server) {
            out.push(r.server.clone());
        }
    }
    out
}

/// Write, per workload, a throughput chart and a p99 latency chart. Returns the paths.
pub fn write_charts(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut apps: Vec<App> = report.runs.iter().map(|r| r.app).collect();
    apps.sort();
    apps.dedup();
    let mut out = Vec::new();
    for app in apps {
        let runs: Vec<&RunResult> = report.runs.iter().filter(|r| r.app == app).collect();
        let mut concs: Vec<usize> = runs.iter().map(|r| r.concurrency).collect();
        concs.sort_unstable();
        concs.dedup();
        let groups: Vec<String> = concs.iter().map(|c| format!("c={c}")).collect();
        let servers = servers_in_order(&runs);
        let pick = |f: &dyn Fn(&RunResult) -> f64| -> Vec<(String, Vec<Option<f64>>)> {
            servers
                .iter()
                .map(|s| {
                    let vals = concs
                        .iter()
                        .map(|c| {
                            runs.iter()
                                .find(|r| &r.server == s && r.concurrency == *c)
                                .map(|r| f(r))
                        })
                        .collect();
                    (s.clone(), vals)
                })
                .collect()
        };
        let rps = grouped_bars(
            &format!("{}: requests per second (higher is better)", app.name()),
            "requests/s",
            &groups,
            &pick(&|r| r.rps),
        );
        let p99 = grouped_bars(
            &format!("{}: p99 latency in ms (lower is better)", app.name()),
            "p99 latency (ms)",
            &groups,
            &pick(&|r| r.p99_us as f64 / 1000.0),
        );
        for (kind, svg) in [("rps", rps), ("p99", p99)] {
            let p = dir.join(format!("bench-{}-{kind}.svg", app.name()));
            std::fs::write(&p, svg)?;
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_scales() {
        assert_eq!(nice_scale(95.0), (100.0, 20.0));
        assert_eq!(nice_scale(12_345.0), (12_500.0, 2_500.0));
        assert_eq!(nice_scale(16_000.0), (20_000.0, 5_000.0));
        assert_eq!(nice_scale(0.0), (1.0, 0.2));
    }

    #[test]
    fn chart_has_bars_and_legend() {
        let svg = grouped_bars(
            "t <x>",
            "rps",
            &["c=1".into(), "c=64".into()],
            &[
                ("a".into(), vec![Some(10.0), Some(20.0)]),
                ("b".into(), vec![None, Some(5.0)]),
            ],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect x=").count(), 3 + 2); // 3 bars + 2 legend swatches
        assert!(svg.contains("t &lt;x&gt;"));
    }
}
