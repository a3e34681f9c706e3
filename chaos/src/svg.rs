//! The SVG timeline: who led, running replicas per service against their
//! spec, writes and their outcomes, faults as shaded spans.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::history::{Journal, Millis, Outcome};
use crate::report::leader_at;

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 20.0;
const LANE: f64 = 56.0;
const PALETTE: [&str; 8] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `passed`: the run's verdict, for the title.
pub fn render(j: &Journal, passed: bool) -> String {
    let end = j.end.max(1) as f64;
    let x = |t: Millis| LEFT + (t as f64 / end) * (WIDTH - LEFT - RIGHT);
    // Services worth a lane: the scenario's and the load's, not the probes' empty ones.
    let mut services: Vec<String> = Vec::new();
    for o in &j.observations {
        for (name, s) in &o.services {
            if (s.desired > 0 || s.running > 0) && !services.contains(name) {
                services.push(name.clone());
            }
        }
    }
    services.sort();
    let top = 40.0;
    let leader_y = top;
    let writes_y = top + LANE;
    let svc_y = top + 2.0 * LANE;
    let axis_y = svc_y + LANE * services.len() as f64 + 10.0;
    let height = axis_y + 110.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{} (seed {}) — {}</text>"#,
        esc(&j.scenario.name),
        j.seed,
        if passed { "PASS" } else { "FAIL" }
    );

    // Faults: lasting ones shaded until undone, the rest as a line.
    let band_bottom = axis_y;
    for (i, f) in j.faults.iter().enumerate() {
        if f.undoes.is_some() {
            continue;
        }
        let until = j
            .faults
            .iter()
            .find(|g| g.undoes == Some(i))
            .map(|g| g.done);
        let who = if f.nodes.len() <= 2 {
            f.nodes.join(",")
        } else {
            format!("{} nodes", f.nodes.len())
        };
        let label = match f.detail.strip_prefix("actor ") {
            // "scheduler@manager-1" says more than "kill-actor manager-1".
            Some(actor) if f.action == "kill-actor" => {
                let short: String = actor.chars().take(12).collect();
                esc(&format!("{short}@{who}"))
            }
            _ => esc(&format!("{} {who}", f.action)),
        };
        match until {
            Some(u) if f.lasting() => {
                let _ = writeln!(
                    s,
                    r##"<rect x="{:.1}" y="{top}" width="{:.1}" height="{:.1}" fill="#d62728" fill-opacity="0.12"><title>{label}</title></rect>"##,
                    x(f.at),
                    (x(u) - x(f.at)).max(1.0),
                    band_bottom - top
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    r##"<line x1="{0:.1}" x2="{0:.1}" y1="{top}" y2="{band_bottom:.1}" stroke="#d62728" stroke-dasharray="3,2"><title>{label}</title></line>"##,
                    x(f.at)
                );
            }
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" fill="#d62728" transform="rotate(35 {:.1} {:.1})">{label}</text>"##,
            x(f.at) + 3.0,
            band_bottom + 26.0,
            x(f.at) + 3.0,
            band_bottom + 26.0
        );
    }

    // Leader lane.
    let _ = writeln!(
        s,
        r#"<text x="10" y="{:.1}">leader</text>"#,
        leader_y + LANE / 2.0
    );
    let colors: BTreeMap<&str, &str> = j
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), PALETTE[i % PALETTE.len()]))
        .collect();
    // One span per leadership, not one per observation.
    let mut spans: Vec<(Millis, Millis, Option<String>)> = Vec::new();
    for o in &j.observations {
        let who = leader_at(j, o);
        match spans.last_mut() {
            Some(last) if last.2 == who => last.1 = o.at,
            Some(last) => {
                last.1 = o.at;
                spans.push((o.at, o.at, who));
            }
            None => spans.push((o.at, o.at, who)),
        }
    }
    for (from, to, who) in spans {
        let fill = who
            .as_deref()
            .and_then(|n| colors.get(n))
            .copied()
            .unwrap_or("#dddddd");
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.2}" height="{:.1}" fill="{fill}"><title>{}</title></rect>"#,
            x(from),
            leader_y + 8.0,
            (x(to) - x(from)).max(0.5),
            LANE - 16.0,
            esc(who.as_deref().unwrap_or("no leader"))
        );
    }
    let mut lx = LEFT;
    for (name, color) in &colors {
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="26" width="10" height="10" fill="{color}"/><text x="{:.1}" y="35">{}</text>"#,
            lx + 13.0,
            esc(name)
        );
        lx += 90.0;
    }

    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="20" fill="#555">services: <tspan fill="#999">- - desired</tspan>  <tspan fill="#1f77b4">— running (cluster state)</tspan>  <tspan fill="#5cb85c">▬ processes</tspan>   writes: <tspan fill="#2ca02c">ok</tspan> <tspan fill="#ff7f0e">unknown</tspan> <tspan fill="#999">refused</tspan></text>"##,
        WIDTH - 560.0
    );

    // Writes: a tick per write, coloured by outcome.
    let _ = writeln!(
        s,
        r#"<text x="10" y="{:.1}">writes</text>"#,
        writes_y + LANE / 2.0
    );
    for op in &j.ops {
        let color = match op.outcome {
            Outcome::Ok => "#2ca02c",
            Outcome::Refused => "#999999",
            Outcome::Unknown => "#ff7f0e",
        };
        let _ = writeln!(
            s,
            r#"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="{color}"><title>{3} {4} {5:?} via {6} ({7} ms)</title></line>"#,
            x(op.sent),
            writes_y + 8.0,
            writes_y + LANE - 8.0,
            esc(&op.kind),
            esc(&op.service),
            op.outcome,
            esc(&op.via),
            op.done.saturating_sub(op.sent)
        );
    }

    // One lane per service: running (solid) against desired (dashed).
    for (k, name) in services.iter().enumerate() {
        let y0 = svc_y + LANE * k as f64;
        let max = j
            .observations
            .iter()
            .filter_map(|o| o.services.get(name))
            .map(|v| v.desired.max(v.running).max(v.processes.unwrap_or(0)))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let y = |v: u64| y0 + LANE - 6.0 - (v as f64 / max) * (LANE - 14.0);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#eeeeee"/>"##,
            WIDTH - RIGHT,
            y0 + LANE,
            y0 + LANE
        );
        let _ = writeln!(
            s,
            r##"<text x="10" y="{:.1}">{}</text><text x="10" y="{:.1}" fill="#777">max {max}</text>"##,
            y0 + LANE / 2.0,
            esc(name),
            y0 + LANE / 2.0 + 12.0
        );
        // Processes wide and pale underneath, so the state's line shows on top.
        for (which, dash, color, width) in [
            ("desired", "4,3", "#999999", 1.5),
            ("processes", "", "#98df8a", 4.0),
            ("running", "", "#1f77b4", 1.5),
        ] {
            let mut pts = String::new();
            let mut prev: Option<f64> = None;
            let mut last_at = 0;
            for o in &j.observations {
                let Some(v) = o.services.get(name) else {
                    continue;
                };
                let val = match which {
                    "desired" => v.desired,
                    "running" => v.running,
                    _ => match v.processes {
                        Some(p) => p,
                        None => continue,
                    },
                };
                // A step line: a point only where the value changes.
                match prev {
                    Some(py) if py == y(val) => {}
                    Some(py) => {
                        let _ = write!(pts, "{:.1},{py:.1} {:.1},{:.1} ", x(o.at), x(o.at), y(val));
                    }
                    None => {
                        let _ = write!(pts, "{:.1},{:.1} ", x(o.at), y(val));
                    }
                }
                prev = Some(y(val));
                last_at = o.at;
            }
            if let Some(py) = prev {
                let _ = write!(pts, "{:.1},{py:.1}", x(last_at));
            }
            if !pts.is_empty() {
                let _ = writeln!(
                    s,
                    r#"<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}" stroke-dasharray="{dash}"/>"#
                );
            }
        }
    }

    // Time axis.
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" x2="{:.1}" y1="{axis_y:.1}" y2="{axis_y:.1}" stroke="black"/>"#,
        WIDTH - RIGHT
    );
    let step = [1000, 2000, 5000, 10000, 20000, 30000, 60000]
        .into_iter()
        .find(|st| j.end / st <= 12)
        .unwrap_or(120000);
    let mut t = 0;
    while t <= j.end {
        let _ = writeln!(
            s,
            r#"<line x1="{0:.1}" x2="{0:.1}" y1="{axis_y:.1}" y2="{1:.1}" stroke="black"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}s</text>"#,
            x(t),
            axis_y + 4.0,
            axis_y + 15.0,
            t / 1000
        );
        t += step;
    }
    s.push_str("</svg>\n");
    s
}
